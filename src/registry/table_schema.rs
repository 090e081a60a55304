//! The columns of tables a write touches, and the rule that data written
//! into a table has the table's columns (names, order, Arrow types,
//! nullability and field metadata, as readers of a folder require).

use super::session::is_file_table;
use super::{Error, PackageName, Registry, Resolved, Result};
use crate::manifest::{Entry, Manifest, key};
use object_store::ObjectStoreExt;

impl Registry {
    /// Refuses a Parquet file at `key` whose columns differ from those of
    /// the folder table it lies in, in `m`: its folder, when that holds part
    /// files (`part-*.parquet`, as write sessions and Spark write them)
    /// besides it and outside the `removed` tables. Readers read such a
    /// folder as one table, which a file of other columns would break.
    pub(super) async fn folder_member_agrees(
        &self,
        pkg: &PackageName,
        m: &Manifest,
        key: &str,
        columns: &[(String, String)],
        removed: &[String],
    ) -> Result<()> {
        let Some((folder, _)) = key.rsplit_once('/').filter(|_| is_file_table(key)) else { return Ok(()) };
        let part = m.entries().find(|e| {
            e.logical_key != key
                && e.logical_key.rsplit_once('/').is_some_and(|(f, name)| {
                    f == folder && name.starts_with("part-") && name.to_ascii_lowercase().ends_with(".parquet")
                })
                && !removed.iter().any(|t| e.logical_key == *t || key::is_under(&e.logical_key, t))
        });
        if let Some(e) = part {
            let have = self.parquet_columns(e).await?;
            schema_agrees(pkg, folder, &have, columns, &format!("the file {key}"))?;
        }
        Ok(())
    }

    /// `(name, Arrow type)` of the columns of a Parquet entry, from its footer.
    pub(super) async fn parquet_columns(&self, entry: &Entry) -> Result<Vec<(String, String)>> {
        let what = &entry.logical_key;
        let bad = |why: String| Error::invalid(format!("{what}: cannot read its Parquet footer: {why}"));
        let Resolved { store, path, .. } = self.locate(entry).await?;
        let size = store.head(&path).await.map_err(|e| Error::storage(what.clone(), e))?.size;
        if size < 12 {
            return Err(bad(format!("{size} bytes is too short for Parquet")));
        }
        let tail = store.get_range(&path, size - 8..size).await.map_err(|e| Error::storage(what.clone(), e))?;
        if &tail[4..] != b"PAR1" {
            return Err(bad("no Parquet magic at its end".into()));
        }
        let footer = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("four bytes")));
        if footer + 8 > size {
            return Err(bad(format!("a footer of {footer} bytes in a file of {size}")));
        }
        let bytes =
            store.get_range(&path, size - 8 - footer..size - 8).await.map_err(|e| Error::storage(what.clone(), e))?;
        let metadata =
            parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let file = metadata.file_metadata();
        let schema = parquet::arrow::parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
            .map_err(|e| bad(e.to_string()))?;
        Ok(columns_of(&schema))
    }
}

/// `(name, Arrow type)` of each column of `schema`.
pub fn columns_of(schema: &arrow::datatypes::Schema) -> Vec<(String, String)> {
    let column = |f: &arrow::datatypes::FieldRef| {
        // Readers require a folder's parts to agree on these too.
        let mut ty = f.data_type().to_string();
        if !f.is_nullable() {
            ty.push_str(" NOT NULL");
        }
        if !f.metadata().is_empty() {
            let mut meta: Vec<_> = f.metadata().iter().collect();
            meta.sort();
            ty.push_str(&format!(" with field metadata {meta:?}"));
        }
        (f.name().clone(), ty)
    };
    schema.fields().iter().map(column).collect()
}

/// The entries of table `table` in `m`: the file itself, or the files under the folder.
pub fn table_entries<'a>(m: &'a Manifest, table: &str) -> Vec<&'a Entry> {
    m.entries().filter(|e| e.logical_key == table || key::is_under(&e.logical_key, table)).collect()
}

/// Refuses `new` columns that differ from the table's `have`, naming the first column at fault.
pub(super) fn schema_agrees(
    pkg: &PackageName,
    table: &str,
    have: &[(String, String)],
    new: &[(String, String)],
    what: &str,
) -> Result<()> {
    let mismatch = |column: &str, why: String| Error::SchemaMismatch {
        package: pkg.to_string(),
        path: table.to_owned(),
        column: column.to_owned(),
        why,
    };
    for (name, ty) in new {
        match have.iter().find(|(n, _)| n == name) {
            None => return Err(mismatch(name, format!("{what} has column {name} that the table does not have"))),
            Some((_, had)) if had != ty => {
                return Err(mismatch(name, format!("the table has it as {had}, {what} as {ty}")));
            }
            Some(_) => {}
        }
    }
    if let Some((name, _)) = have.iter().find(|(n, _)| !new.iter().any(|(m, _)| m == n)) {
        return Err(mismatch(name, format!("{what} lacks column {name} that the table has")));
    }
    if let Some((i, (name, _))) = new.iter().enumerate().find(|(i, (n, _))| have[*i].0 != *n) {
        let j = have.iter().position(|(n, _)| n == name).expect("every column was found");
        return Err(mismatch(name, format!("the table has it at position {}, {what} at {}", j + 1, i + 1)));
    }
    Ok(())
}
