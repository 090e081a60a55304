//! Editing a manifest's header in place: a member set in both the header's
//! values and its exact form, so what is written and hashed keeps the rest
//! of the header as it was written (integers beyond 64 bits included).

use super::{Manifest, json};
use serde_json::{Map, Value};

impl Manifest {
    /// Sets the header member at `path` (`["user_meta", "sheaf", "lineage"]`)
    /// to `value`, making objects on the way (a member on the way that is not
    /// an object becomes one). Both the header's values and its exact form
    /// change, so what is written and hashed holds `value` while the rest of
    /// the header keeps its numbers as written (integers beyond 64 bits
    /// included). A repeated key keeps its first place, as Python's dict does.
    pub fn set_header_member(&mut self, path: &[&str], value: Value) {
        let Some((last, ways)) = path.split_last() else { return };
        let mut object = &mut self.header;
        for way in ways {
            let member = object.entry(*way).or_insert_with(|| Value::Object(Map::new()));
            if !member.is_object() {
                *member = Value::Object(Map::new());
            }
            object = member.as_object_mut().expect("an object");
        }
        object.insert((*last).to_owned(), value.clone());
        self.exact.header_text = None;
        if let Some(json::Exact::Object(members)) = &mut self.exact.header {
            let mut members = members;
            for way in ways {
                let member = exact_member(members, way);
                if !matches!(member, json::Exact::Object(_)) {
                    *member = json::Exact::Object(Vec::new());
                }
                let json::Exact::Object(inner) = member else { unreachable!("made an object above") };
                members = inner;
            }
            let text = json::encode(&value, json::Style::ManifestLine);
            *exact_member(members, last) = json::parse_exact(&text).expect("encoded JSON parses");
        }
    }
}

/// The member `key` of an exact object, added (null) if absent; a repeated
/// key becomes one, in its first place with its last value (Python's dict).
fn exact_member<'a>(members: &'a mut Vec<(String, json::Exact)>, key: &str) -> &'a mut json::Exact {
    let at: Vec<usize> = members.iter().enumerate().filter(|(_, (k, _))| k == key).map(|(i, _)| i).collect();
    let first = match (at.first(), at.last()) {
        (Some(&first), Some(&last)) => {
            if first != last {
                members[first].1 = members[last].1.clone();
                let mut i = 0;
                members.retain(|(k, _)| {
                    i += 1;
                    k != key || i - 1 == first
                });
            }
            first
        }
        _ => {
            members.push((key.to_owned(), json::Exact::Null));
            members.len() - 1
        }
    };
    &mut members[first].1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_members_set_on_an_exact_header_are_written_and_hashed() {
        let text = "{\"version\": \"v0\", \"message\": \"old\", \"user_meta\": {\"n\": 1180591620717411303424, \
                    \"sheaf\": 3, \"k\": 1, \"k\": 2}, \"extra\": 99999999999999999999999}\n";
        let (m, _) = Manifest::parse_hashed(text.as_bytes()).unwrap();
        let mut kept = m.clone();
        kept.set_header_member(&["user_meta", "sheaf", "lineage"], json!({"session": "s"}));
        let next = kept.with_changes(vec![], Some("new".into())).unwrap();
        let written = String::from_utf8(next.to_jsonl()).unwrap();
        assert_eq!(
            written.lines().next().unwrap(),
            "{\"version\": \"v0\", \"message\": \"new\", \"user_meta\": {\"n\": 1180591620717411303424, \"sheaf\": \
             {\"lineage\": {\"session\": \"s\"}}, \"k\": 2}, \"extra\": 99999999999999999999999}"
        );
        let (reread, parsed) = Manifest::parse_hashed(written.as_bytes()).unwrap();
        assert_eq!((next.top_hash(), reread.top_hash()), (parsed.top_hash.clone(), parsed.top_hash));
        assert_eq!(next.user_meta().unwrap().pointer("/sheaf/lineage/session"), Some(&json!("s")));

        // Replacing user_meta drops its old numbers, keeps the header's others.
        let mut replaced = m.clone();
        replaced.set_header_member(&["user_meta"], json!({"new": 1}));
        let written = String::from_utf8(replaced.to_jsonl()).unwrap();
        assert!(written.starts_with("{\"version\": \"v0\", \"message\": \"old\", \"user_meta\": {\"new\": 1}, \"extra\": 99999999999999999999999}"));
        // A manifest without an exact header changes its values.
        let mut plain = Manifest::build(None, None, vec![]).unwrap();
        plain.set_header_member(&["user_meta", "a"], json!(1));
        assert_eq!(plain.user_meta(), Some(&json!({"a": 1})));
    }
}
