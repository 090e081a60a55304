//! Quilt's own published manifests (`tests/fixtures/quilt-vectors`): each
//! parses, hashes to the top hash in its file name, and keeps that hash when
//! Sheaf writes it back out.

use sheaf::manifest::Manifest;
use std::path::{Path, PathBuf};

fn vectors() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quilt-vectors");
    let mut out = Vec::new();
    for dir in ["packages", "equivalent-packages"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("vector folder") {
            let path = entry.expect("vector file").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if !name.ends_with(".jsonl") {
                continue;
            }
            let hash = name
                .get(..64)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .unwrap_or_else(|| panic!("{}: vector files are named <top hash>[-description].jsonl", path.display()));
            out.push((path.clone(), hash.to_owned()));
        }
    }
    out.sort();
    out
}

#[test]
fn published_manifests_hash_as_quilt_says() {
    let vectors = vectors();
    assert!(vectors.len() >= 25, "expected Quilt's vectors, found {}", vectors.len());
    let mut wrong = Vec::new();
    for (path, expected) in &vectors {
        let bytes = std::fs::read(path).expect("read vector");
        match Manifest::parse(&bytes) {
            Ok(m) if m.top_hash() == *expected => {
                let again = Manifest::parse(&m.to_jsonl()).expect("re-parse what Sheaf wrote");
                if again.top_hash() != *expected {
                    wrong.push(format!("{}: written back, hashes to {}", path.display(), again.top_hash()));
                }
            }
            Ok(m) => wrong.push(format!("{}: hashes to {}", path.display(), m.top_hash())),
            Err(e) => wrong.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(wrong.is_empty(), "{} of {} vectors disagree:\n{}", wrong.len(), vectors.len(), wrong.join("\n"));
}

#[test]
fn workflow_headers_are_kept_and_hashed() {
    let vectors = vectors();
    let (path, expected) = vectors
        .iter()
        .find(|(p, _)| p.to_string_lossy().contains("workflow-schemas-key-order"))
        .expect("workflow vector");
    let m = Manifest::parse(&std::fs::read(path).unwrap()).unwrap();
    let workflow = m.header.get("workflow").expect("workflow kept in the header");
    assert_eq!(workflow["id"], "dual-wf");
    assert_eq!(&m.top_hash(), expected);
    // Without the workflow, the hash differs: it is part of what is hashed.
    let mut bare = m.clone();
    bare.header.remove("workflow");
    assert_ne!(&bare.top_hash(), expected);
}
