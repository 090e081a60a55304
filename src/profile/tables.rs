//! The profiled tables of a revision, and drift between two revisions.

use super::{Profile, TableDrift, compare, merge};
use crate::manifest::Manifest;
use serde::Serialize;
use std::collections::BTreeMap;

/// A table whose profile a manifest stores.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTable {
    /// Path in the package: the file, or the folder of a folder table.
    pub path: String,
    /// Files holding its profiles (more than one: a folder's parts, merged).
    pub parts: usize,
    /// The table's profile.
    pub profile: Profile,
}

/// The table an entry belongs to: the folder of a part file written by a
/// write session or Spark (`folder/part-*.parquet`), else the entry itself.
pub fn table_of(logical_key: &str) -> &str {
    match logical_key.rsplit_once('/') {
        Some((folder, file)) if file.starts_with("part-") && is_parquet(file) => folder,
        _ => logical_key,
    }
}

fn is_parquet(file: &str) -> bool {
    let lower = file.to_ascii_lowercase();
    lower.ends_with(".parquet") || lower.ends_with(".pq")
}

fn is_table_file(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    [".parquet", ".pq", ".csv", ".tsv", ".tab"].iter().any(|ext| lower.ends_with(ext))
}

/// Every table of `manifest` with a stored profile (`meta.sheaf.profile`),
/// by path; a folder table's part profiles are merged (see [`merge`]).
pub fn stored_tables(manifest: &Manifest) -> BTreeMap<String, StoredTable> {
    let mut parts: BTreeMap<&str, Vec<Profile>> = BTreeMap::new();
    for entry in manifest.entries() {
        if let Some(profile) = Profile::of_meta(&entry.meta) {
            parts.entry(table_of(&entry.logical_key)).or_default().push(profile);
        }
    }
    parts
        .into_iter()
        .map(|(path, profiles)| {
            let table = StoredTable { path: path.to_owned(), parts: profiles.len(), profile: merge(&profiles) };
            (path.to_owned(), table)
        })
        .collect()
}

/// Parquet, CSV and TSV tables of `manifest` with no stored profile.
fn unprofiled_tables(manifest: &Manifest) -> Vec<String> {
    let mut paths: Vec<String> = manifest
        .entries()
        .filter(|e| is_table_file(&e.logical_key) && Profile::of_meta(&e.meta).is_none())
        .map(|e| table_of(&e.logical_key).to_owned())
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// One table's drift between two revisions.
#[derive(Debug, Clone, Serialize)]
pub struct TableComparison {
    /// Path in the package.
    pub path: String,
    /// Profiled files of the table in each revision.
    pub parts: [usize; 2],
    /// What changed.
    #[serde(flatten)]
    pub drift: TableDrift,
    /// The two profiles compared.
    #[serde(skip)]
    pub profiles: [Profile; 2],
}

/// Drift of every table in two revisions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RevisionDrift {
    /// Tables profiled in both whose profiles differ, by path.
    pub tables: Vec<TableComparison>,
    /// Tables profiled in both with the same profile (the same data, or
    /// data no statistic tells apart): not listed in `tables`.
    pub unchanged: Vec<String>,
    /// Tables in both that lack a stored profile in either (written by
    /// another tool, or before profiles existed): not compared.
    pub unprofiled: Vec<String>,
}

impl RevisionDrift {
    /// Compares the tables of `from` and `to` that are in both.
    pub fn between(from: &Manifest, to: &Manifest) -> RevisionDrift {
        let (a, b) = (stored_tables(from), stored_tables(to));
        let unchanged = a.iter().filter(|(p, ta)| b.get(*p).is_some_and(|tb| tb.profile == ta.profile));
        let unchanged: Vec<String> = unchanged.map(|(p, _)| p.clone()).collect();
        let tables = a
            .iter()
            .filter_map(|(path, ta)| {
                let tb = b.get(path).filter(|tb| tb.profile != ta.profile)?;
                Some(TableComparison {
                    path: path.clone(),
                    parts: [ta.parts, tb.parts],
                    drift: compare(&ta.profile, &tb.profile),
                    profiles: [ta.profile.clone(), tb.profile.clone()],
                })
            })
            .collect();
        let (ua, ub) = (unprofiled_tables(from), unprofiled_tables(to));
        let in_both = |p: &String| (a.contains_key(p) || ua.contains(p)) && (b.contains_key(p) || ub.contains(p));
        let mut unprofiled: Vec<String> = ua.iter().chain(&ub).filter(|p| in_both(p)).cloned().collect();
        unprofiled.sort();
        unprofiled.dedup();
        RevisionDrift { tables, unchanged, unprofiled }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(entries: &[(&str, Option<&Profile>)]) -> Manifest {
        let mut text = String::from("{\"version\": \"v0\"}\n");
        for (key, profile) in entries {
            let meta = match profile {
                Some(p) => serde_json::json!({"sheaf": {"profile": p.to_json()}}),
                None => serde_json::json!({}),
            };
            let line = serde_json::json!({
                "logical_key": key, "physical_keys": [format!("file:///x/{key}")], "size": 1,
                "hash": {"type": "SHA256", "value": "00".repeat(32)}, "meta": meta,
            });
            text.push_str(&format!("{line}\n"));
        }
        Manifest::parse(text.as_bytes()).unwrap()
    }

    fn rows(n: u64) -> Profile {
        Profile { rows: n, columns: vec![] }
    }

    #[test]
    fn revisions_compare_changed_tables_and_name_the_rest() {
        let a = manifest(&[
            ("f/part-00000-a.parquet", Some(&rows(2))),
            ("f/part-00001-a.parquet", Some(&rows(3))),
            ("same.parquet", Some(&rows(1))),
            ("old.csv", None),
            ("gone.parquet", Some(&rows(1))),
        ]);
        let b = manifest(&[
            ("f/part-00000-b.parquet", Some(&rows(7))),
            ("same.parquet", Some(&rows(1))),
            ("old.csv", Some(&rows(4))),
            ("notes.txt", None),
        ]);
        let tables = stored_tables(&a);
        assert_eq!((tables["f"].parts, tables["f"].profile.rows), (2, 5));
        let d = RevisionDrift::between(&a, &b);
        let compared: Vec<(&str, [usize; 2], [u64; 2])> =
            d.tables.iter().map(|t| (t.path.as_str(), t.parts, t.drift.rows)).collect();
        assert_eq!(compared, vec![("f", [2, 1], [5, 7])]);
        assert_eq!(d.unchanged, vec!["same.parquet".to_owned()]);
        assert_eq!(d.unprofiled, vec!["old.csv".to_owned()]);
    }

    #[test]
    fn parts_belong_to_their_folder() {
        assert_eq!(table_of("features/part-00001-abc.parquet"), "features");
        assert_eq!(table_of("a/b/part-00000-x.snappy.parquet"), "a/b");
        assert_eq!(table_of("features/x.parquet"), "features/x.parquet");
        assert_eq!(table_of("part-00000.parquet"), "part-00000.parquet");
        assert_eq!(table_of("data/part-1.csv"), "data/part-1.csv");
    }
}
