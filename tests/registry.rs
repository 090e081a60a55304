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
    let opts = PushOptions { message: Some("first".into()), ..Default::default() };
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

/// A push walks its folder a round of 2,048 files at a time and writes the
/// manifest as it goes: a package of several rounds, with names whose walk
/// order differs from plain string order, gets one manifest in walk order
/// whichever registry it goes to, and hints from the previous revision find
/// the one file changed in a later round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_of_several_rounds_writes_one_manifest_in_walk_order() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..4500u32 {
        write(src.path(), &format!("d{}/f{i:05}", i % 3), &(i % 7).to_le_bytes());
    }
    for name in ["B", "a/b", "a-b", "b/x", "b.txt", "d1.txt", "d1-x/y"] {
        write(src.path(), name, name.as_bytes());
    }
    let opts = PushOptions::default();
    let memory = unique_memory_registry("rounds");
    let on_memory = memory.push(&pkg("r/p"), src.path(), &opts, &NoProgress).await.unwrap();
    assert_eq!(on_memory.files, 4507);
    let disk_dir = tempfile::tempdir().unwrap();
    let disk = Registry::open(disk_dir.path().to_str().unwrap()).unwrap();
    let on_disk = disk.push(&pkg("r/p"), src.path(), &opts, &NoProgress).await.unwrap();
    assert_eq!(on_disk.top_hash, on_memory.top_hash, "physical keys are not hashed");
    // 7 distinct contents of 4 bytes and 7 named files.
    assert_eq!((on_disk.uploaded_files, on_memory.uploaded_files), (14, 14));

    let m = disk.read_manifest(&on_disk.top_hash).await.unwrap();
    let keys: Vec<&str> = m.entries().map(|e| e.logical_key.as_str()).collect();
    assert_eq!(&keys[..4], ["B", "a/b", "a-b", "b/x"]);
    assert_eq!(keys[4], "b.txt");
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    assert_eq!(keys, sorted);
    let at = |key: &str| keys.iter().position(|k| *k == key).unwrap();
    assert_eq!((at("d1-x/y"), at("d1.txt")), (at("d1/f04498") + 1, at("d1/f04498") + 2));

    let again = disk.push(&pkg("r/p"), src.path(), &opts, &NoProgress).await.unwrap();
    assert!(again.unchanged && again.uploaded_files == 0, "{again:?}");
    write(src.path(), "d2/f04499", b"late");
    let changed = disk.push(&pkg("r/p"), src.path(), &opts, &NoProgress).await.unwrap();
    assert_eq!((changed.files, changed.uploaded_files, changed.uploaded_bytes), (4507, 1, 4), "{changed:?}");
    assert_eq!(changed.previous.as_deref(), Some(on_disk.top_hash.as_str()));
    let r: PackageRef = format!("r/p@{}", changed.top_hash).parse().unwrap();
    assert!(disk.verify(&r, src.path(), false, &NoProgress).await.unwrap().ok);
    assert!(fs::read_dir(disk_dir.path().join(".sheaf/tmp")).unwrap().next().is_none(), "no staging left");
}

/// A push that fails half way (a file whose bytes do not match its listed
/// size, found in a later round) leaves no revision and no staged manifest,
/// on local disk and elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_failing_in_a_later_round_leaves_no_revision() {
    // sysfs lists its files as 4096 bytes and reads fewer (a local push
    // reads the listed size); procfs lists them empty and reads more (a
    // remote push hashes to the end).
    let (sysfs, procfs) = ("/sys/kernel/mm/transparent_hugepage/enabled", "/proc/self/status");
    assert!(fs::metadata(sysfs).unwrap().len() as usize > fs::read(sysfs).unwrap().len(), "{sysfs}");
    let dir = tempfile::tempdir().unwrap();
    let disk = Registry::open(dir.path().to_str().unwrap()).unwrap();
    for (reg, target) in [(disk, sysfs), (unique_memory_registry("fails"), procfs)] {
        let src = tempfile::tempdir().unwrap();
        for i in 0..2100u32 {
            write(src.path(), &format!("f{i:05}"), b"x");
        }
        std::os::unix::fs::symlink(target, src.path().join("f02100")).unwrap();
        let err = reg.push(&pkg("f/p"), src.path(), &PushOptions::default(), &NoProgress).await.unwrap_err();
        assert!(err.to_string().contains("f02100"), "{err}");
        assert!(reg.resolve(&pkg("f/p"), &Revision::Latest).await.is_err(), "{target}");
    }
    assert!(fs::read_dir(dir.path().join(".quilt/packages")).map(|d| d.count()).unwrap_or(0) == 0);
    assert!(fs::read_dir(dir.path().join(".sheaf/tmp")).unwrap().next().is_none(), "no staging left");
}

/// Duplicate logical keys are refused whether the manifest is in walk order
/// (found next to each other, nothing kept per entry) or not (a second pass).
#[tokio::test]
async fn duplicate_keys_are_refused_in_manifests_in_any_order() {
    use sheaf::manifest::stream::LineParser;
    let entry = |key: &str| {
        format!(
            r#"{{"logical_key": "{key}", "physical_keys": ["file:///x/{key}"], "size": 1, "hash": {{"type": "SHA256", "value": "00"}}, "meta": {{}}}}"#
        )
    };
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = Registry::open(reg_dir.path().to_str().unwrap()).unwrap();
    for (keys, duplicate) in
        [(["a", "b", "c"], false), (["b", "a", "c"], false), (["b", "a", "b"], true), (["a", "b", "b"], true)]
    {
        let lines: Vec<String> =
            std::iter::once(r#"{"version": "v0", "message": null}"#.to_owned()).chain(keys.map(entry)).collect();
        // Named by the top hash a parser keeping nothing per entry computes.
        let mut parser = LineParser::streaming();
        let fed = lines.iter().try_for_each(|l| parser.feed(l).map(|_| ()));
        let top = match fed.and_then(|()| parser.finish()) {
            Ok((_, top)) => top,
            Err(_) => "0".repeat(64),
        };
        write(reg_dir.path(), &format!(".quilt/packages/{top}"), (lines.join("\n") + "\n").as_bytes());
        let read = reg.read_under(&top, "").await;
        match duplicate {
            false => assert_eq!(read.unwrap().entries.len(), 3, "{keys:?}"),
            true => {
                let err = read.unwrap_err().to_string();
                assert!(err.contains("duplicate logical key"), "{keys:?}: {err}");
            }
        }
    }
}
