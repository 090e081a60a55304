//! Library-level tests of the registry on `memory://` (conditional puts) and
//! on local disk (OS locks). The CLI and quilt3/S3 cross-checks live in
//! tests/python.

use sheaf::progress::NoProgress;
use sheaf::registry::{PushOptions, ReadPolicy};
use sheaf::{Error, PackageName, PackageRef, Registry, Revision};
use std::fs;
use std::path::Path;

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn tree(root: &Path, seed: u8) {
    write(root, "a.txt", b"Hello, World!");
    write(root, "empty", b"");
    write(root, "sub/deep/x.bin", &vec![seed; 100_000]);
    write(root, "ünï/😀.txt", &[seed, 1, 2, 3]);
}

fn pkg(s: &str) -> PackageName {
    s.parse().unwrap()
}

fn unique_memory_registry(name: &str) -> Registry {
    Registry::open(&format!("memory://{name}-{}", std::process::id())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_install_verify_round_trip_on_memory() {
    let reg = unique_memory_registry("roundtrip");
    let src = tempfile::tempdir().unwrap();
    tree(src.path(), 7);
    let opts = PushOptions { message: Some("first".into()), user_meta: None, profile: false };
    let first = reg.push(&pkg("t/p"), src.path(), &opts, &NoProgress).await.unwrap();
    assert_eq!(first.files, 4);
    assert_eq!(first.uploaded_files, 4);

    let again = reg.push(&pkg("t/p"), src.path(), &opts, &NoProgress).await.unwrap();
    assert!(again.unchanged);
    assert_eq!(again.uploaded_files, 0);
    assert_eq!(again.top_hash, first.top_hash);

    let dest = tempfile::tempdir().unwrap();
    let r: PackageRef = format!("t/p@{}", &first.top_hash[..8]).parse().unwrap();
    let installed = reg.install(&r, dest.path(), &NoProgress).await.unwrap();
    assert_eq!(installed.downloaded_files, 4);
    assert_eq!(fs::read(dest.path().join("ünï/😀.txt")).unwrap(), [7, 1, 2, 3]);
    let second = reg.install(&r, dest.path(), &NoProgress).await.unwrap();
    assert_eq!(second.downloaded_files, 0);
    let verified = reg.verify(&r, dest.path(), false, &NoProgress).await.unwrap();
    assert!(verified.ok, "{verified:?}");

    fs::write(dest.path().join("a.txt"), b"changed").unwrap();
    let verified = reg.verify(&r, dest.path(), false, &NoProgress).await.unwrap();
    assert_eq!(verified.modified, ["a.txt"]);
    assert!(!verified.ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_pushes_keep_both_revisions_on_memory_and_disk() {
    let disk = tempfile::tempdir().unwrap();
    for reg in [unique_memory_registry("race"), Registry::open(disk.path().to_str().unwrap()).unwrap()] {
        let dirs: Vec<_> = (0..6u8)
            .map(|i| {
                let d = tempfile::tempdir().unwrap();
                tree(d.path(), i);
                d
            })
            .collect();
        let pushes = dirs.iter().map(|d| {
            let reg = reg.clone();
            let path = d.path().to_path_buf();
            tokio::spawn(async move { reg.push(&pkg("race/p"), &path, &PushOptions::default(), &NoProgress).await })
        });
        let mut hashes: Vec<String> = Vec::new();
        for p in pushes {
            hashes.push(p.await.unwrap().unwrap().top_hash);
        }
        let log = reg.revisions(&pkg("race/p")).await.unwrap();
        for h in &hashes {
            assert!(log.iter().any(|r| &r.top_hash == h), "revision {h} lost from {reg:?}");
        }
        let latest = reg.resolve(&pkg("race/p"), &Revision::Latest).await.unwrap();
        assert!(hashes.contains(&latest));
    }
}

#[tokio::test]
async fn hash_prefixes_tags_delete_and_diff() {
    let reg = unique_memory_registry("refs");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tree(a.path(), 1);
    tree(b.path(), 2);
    write(b.path(), "new.txt", b"new");
    let p = pkg("t/refs");
    let ha = reg.push(&p, a.path(), &PushOptions::default(), &NoProgress).await.unwrap().top_hash;
    let hb = reg.push(&p, b.path(), &PushOptions::default(), &NoProgress).await.unwrap().top_hash;

    assert_eq!(reg.resolve(&p, &Revision::Hash(ha[..6].into())).await.unwrap(), ha);
    let missing = reg.resolve(&p, &Revision::Hash("ffffff".repeat(2))).await;
    assert!(
        matches!(missing, Err(Error::NotFound(_))) || ha.starts_with("ffffffffffff") || hb.starts_with("ffffffffffff")
    );

    reg.tag(&p, &ha, "v1", false).await.unwrap();
    assert_eq!(reg.resolve(&p, &Revision::Tag("v1".into())).await.unwrap(), ha);
    assert!(matches!(reg.tag(&p, &hb, "v1", false).await, Err(Error::Conflict(_))));
    reg.tag(&p, &hb, "v1", true).await.unwrap();
    assert_eq!(reg.resolve(&p, &Revision::Tag("v1".into())).await.unwrap(), hb);

    let diff =
        reg.diff(&format!("t/refs@{ha}").parse().unwrap(), &format!("t/refs@{hb}").parse().unwrap()).await.unwrap();
    assert_eq!(diff.added, ["new.txt"]);
    assert!(diff.modified.contains(&"sub/deep/x.bin".to_string()));

    let report = reg.delete(&p, Some(&hb)).await.unwrap();
    assert_eq!(report.latest.as_deref(), Some(ha.as_str()));
    // Data stays: the deleted revision can still be read by its full hash.
    assert!(reg.read_manifest(&hb).await.is_ok());
    reg.delete(&p, None).await.unwrap();
    assert!(reg.list_packages().await.unwrap().is_empty());
    assert!(matches!(reg.resolve(&p, &Revision::Latest).await, Err(Error::NotFound(_))));
}

/// Writes a hand-made manifest and points `latest` of `pkg` at it.
async fn plant_manifest(reg_dir: &Path, pkg: &str, lines: &[String]) -> String {
    let text = lines.join("\n") + "\n";
    let manifest = sheaf::manifest::Manifest::parse(text.as_bytes());
    // Traversal keys do not even parse; name such a manifest by its SHA-256.
    let top = match manifest {
        Ok(m) => m.top_hash(),
        Err(_) => {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(text.as_bytes()))
        }
    };
    write(reg_dir, &format!(".quilt/packages/{top}"), text.as_bytes());
    write(reg_dir, &format!(".quilt/named_packages/{pkg}/latest"), top.as_bytes());
    top
}

#[tokio::test]
async fn policy_refuses_physical_keys_outside_allowed_locations() {
    let reg_dir = tempfile::tempdir().unwrap();
    let entry = r#"{"logical_key": "passwd", "physical_keys": ["file:///etc/passwd"], "size": 1, "hash": {"type": "SHA256", "value": "00"}, "meta": {}}"#;
    plant_manifest(reg_dir.path(), "evil/p", &[r#"{"version": "v0", "message": null}"#.into(), entry.into()]).await;
    let allowed = tempfile::tempdir().unwrap();
    let reg = Registry::open(reg_dir.path().to_str().unwrap())
        .unwrap()
        .with_policy(ReadPolicy::allow_list([allowed.path().to_str().unwrap()]).unwrap());
    let dest = tempfile::tempdir().unwrap();
    let err = reg.install(&"evil/p".parse().unwrap(), dest.path(), &NoProgress).await.unwrap_err();
    assert!(matches!(err, Error::Forbidden { .. }), "{err}");
    assert!(err.to_string().contains("file:///etc/passwd"), "{err}");
    assert!(!dest.path().join("passwd").exists());
}

#[tokio::test]
async fn traversal_keys_are_refused_before_anything_is_written() {
    let reg_dir = tempfile::tempdir().unwrap();
    let entry = r#"{"logical_key": "../escape.txt", "physical_keys": ["file:///etc/hostname"], "size": 1, "hash": {"type": "SHA256", "value": "00"}, "meta": {}}"#;
    plant_manifest(reg_dir.path(), "evil/t", &[r#"{"version": "v0", "message": null}"#.into(), entry.into()]).await;
    let reg = Registry::open(reg_dir.path().to_str().unwrap()).unwrap();
    let outer = tempfile::tempdir().unwrap();
    let dest = outer.path().join("dest");
    let err = reg.install(&"evil/t".parse().unwrap(), &dest, &NoProgress).await.unwrap_err();
    assert!(err.to_string().contains("../escape.txt"), "{err}");
    assert!(!outer.path().join("escape.txt").exists());
}
