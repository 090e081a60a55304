//! Unit tests of `gc` (a file of their own: the module is long enough).
use super::*;
use std::path::PathBuf;

/// The local file of a registry-relative path.
fn local_path(root: &FsPath, rel: &str) -> PathBuf {
    rel.split('/').fold(root.to_path_buf(), |p, part| p.join(part))
}
use crate::PackageName;
use crate::progress::NoProgress;
use crate::registry::PushOptions;
use object_store::PutPayload;

const HOUR: Duration = Duration::from_secs(3600);

fn age(path: &FsPath, by: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

fn write(root: &FsPath, rel: &str, bytes: &[u8], old: Option<Duration>) -> PathBuf {
    let p = local_path(root, rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, bytes).unwrap();
    if let Some(by) = old {
        age(&p, by);
    }
    p
}

fn by_path(report: &GcReport) -> Vec<(String, Action)> {
    report.leftovers.iter().map(|l| (l.path.clone(), l.action)).collect()
}

async fn pushed(dir: &FsPath, registry: &Registry) -> (String, Vec<String>) {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    std::fs::write(src.join("b.txt"), b"beta").unwrap();
    let pkg: PackageName = "o/p".parse().unwrap();
    let report = registry.push(&pkg, &src, &PushOptions::default(), &NoProgress).await.unwrap();
    let blobs = registry
        .read_manifest(&report.top_hash)
        .await
        .unwrap()
        .entries()
        .map(|e| format!("{BLOBS}/{}", e.hash.blob_hex().unwrap()))
        .collect();
    (report.top_hash, blobs)
}

#[test]
fn classifies_only_sheaf_staging_and_blobs() {
    let hex = "ab".repeat(32);
    assert_eq!(classify(&format!(".sheaf/blobs/{hex}#1"), false, &HashSet::new()), Some(GarbageKind::PartialUpload));
    assert_eq!(classify(&format!(".sheaf/blobs/{hex}#12"), true, &HashSet::new()), Some(GarbageKind::PartialUpload));
    assert_eq!(classify(".sheaf/tmp/123-4", false, &HashSet::new()), Some(GarbageKind::Staging));
    assert_eq!(classify(".sheaf/tags/o/p/v1#1", false, &HashSet::new()), Some(GarbageKind::PartialUpload));
    assert_eq!(classify(&format!(".sheaf/blobs/{hex}"), false, &HashSet::new()), None);
    assert_eq!(classify(&format!(".sheaf/blobs/{hex}"), true, &HashSet::new()), Some(GarbageKind::Unreferenced));
    assert_eq!(classify(&format!(".sheaf/blobs/{}", hex.to_uppercase()), true, &HashSet::new()), None);
    assert_eq!(classify(".sheaf/blobs/README", true, &HashSet::new()), None);
    let dead: HashSet<String> = [hex[..32].to_owned()].into();
    let part = format!(".sheaf/sessions/{}/parts/x.parquet", &hex[..32]);
    assert_eq!(classify(&part, false, &dead), Some(GarbageKind::ExpiredSession));
    assert_eq!(classify(&part, false, &HashSet::new()), None);
    assert_eq!(classify(&format!(".sheaf/blobs/{hex}#x1"), true, &HashSet::new()), None);
    assert_eq!(classify(".sheaf/locks/o/p.lock", true, &HashSet::new()), None);
    assert_eq!(classify(".sheaf/locks/o/p.lock#1", true, &HashSet::new()), None);
    assert_eq!(classify(".sheaf/tags/o/p/v1", true, &HashSet::new()), None);
    assert_eq!(classify(".quilt/named_packages/o/p/latest#1", true, &HashSet::new()), None);
    assert_eq!(classify(".quilt/packages/x", true, &HashSet::new()), None);
}

#[test]
fn references_cover_hashes_and_physical_keys_anywhere() {
    let mut refs = HashSet::new();
    let hex = "0f".repeat(32);
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(hex::decode(&hex).unwrap())
    };
    let manifest = format!(
        "{{\"version\": \"v0\", \"message\": null}}\n\
         {{\"logical_key\": \"a\", \"physical_keys\": [\"s3://other/pre/.sheaf/blobs/cafe?versionId=7\"], \"size\": 1, \"hash\": {{\"type\": \"sha2-256-chunked\", \"value\": \"{b64}\"}}}}\n\
         {{\"logical_key\": \"b\", \"physical_keys\": [\"file:///reg/.sheaf/tmp/odd%20name%231\"], \"size\": 1, \"hash\": {{\"type\": \"SHA256\", \"value\": \"00\"}}}}\n\
         {{\"logical_key\": \"c\", \"physical_keys\": [\"file:///elsewhere/c.txt\"], \"size\": 1, \"hash\": {{\"type\": \"SHA256\", \"value\": \"00\"}}}}\n\
         {{\"logical_key\": \"dir/\", \"meta\": {{}}}}\n"
    );
    references_of("m", manifest.as_bytes(), &mut refs).unwrap();
    let mut got: Vec<&str> = refs.iter().map(String::as_str).collect();
    got.sort();
    let want_blob = format!(".sheaf/blobs/{hex}");
    let mut want = vec![".sheaf/blobs/cafe", ".sheaf/tmp/odd name#1", want_blob.as_str()];
    want.sort();
    assert_eq!(got, want);

    for bad in ["{\"version\": \"v0\"}\nnot json\n", "[1]\n", "{\"physical_keys\": [1]}\n", "{\"physical_keys\": 3}\n"]
    {
        let err = references_of("deadbeef", bad.as_bytes(), &mut refs).unwrap_err();
        assert!(matches!(err, Error::Manifest { .. }), "{err}");
        assert!(err.to_string().contains("deadbeef"), "{err}");
    }
}

#[tokio::test]
async fn local_dry_run_then_delete_removes_exactly_the_old_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    let registry = Registry::open(root.to_str().unwrap()).unwrap();
    let (top, blobs) = pushed(dir.path(), &registry).await;
    let orphan = format!("{BLOBS}/{}", "e".repeat(64));
    let old = Some(2 * HOUR);
    let partial = format!("{}#1", blobs[0]);
    write(&root, &partial, b"half a blob", old);
    write(&root, ".sheaf/tmp/4242-0", b"a pointer", old);
    write(&root, &format!("{}#2", blobs[0]), b"a push running now", None);
    write(&root, &orphan, b"orphan", old);
    write(&root, ".sheaf/locks/o/stale.lock", b"", old);
    write(&root, ".sheaf/blobs/notes.txt", b"not ours", old);
    // Referenced blobs are old too: age must never be enough.
    for b in &blobs {
        age(&local_path(&root, b), 3 * HOUR);
    }

    let dry = registry.gc(&GcOptions { older_than: HOUR, ..Default::default() }).await.unwrap();
    assert!(dry.dry_run && dry.ok());
    assert_eq!(dry.manifests, 1);
    let mut want = vec![
        (".sheaf/tmp/4242-0".to_owned(), Action::WouldRemove),
        (partial.clone(), Action::WouldRemove),
        (format!("{}#2", blobs[0]), Action::Kept),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(by_path(&dry), want);
    assert_eq!((dry.garbage_files, dry.garbage_bytes, dry.kept_files), (2, 20, 1));
    assert!(local_path(&root, &partial).exists() && local_path(&root, ".sheaf/tmp/4242-0").exists());

    // --unreferenced adds the orphan blob, never a referenced one.
    let opts = GcOptions { older_than: HOUR, unreferenced: true, delete: false };
    let dry = registry.gc(&opts).await.unwrap();
    assert!(by_path(&dry).contains(&(orphan.clone(), Action::WouldRemove)), "{:?}", by_path(&dry));
    assert_eq!(dry.garbage_files, 3);

    let done = registry.gc(&GcOptions { delete: true, ..opts }).await.unwrap();
    assert!(!done.dry_run && done.ok(), "{done:?}");
    assert_eq!((done.removed_files, done.kept_files), (3, 1));
    for gone in [&partial, ".sheaf/tmp/4242-0", &orphan] {
        assert!(!local_path(&root, gone).exists(), "{gone}");
    }
    for kept in [format!("{}#2", blobs[0]), ".sheaf/locks/o/stale.lock".into(), ".sheaf/blobs/notes.txt".into()] {
        assert!(local_path(&root, &kept).exists(), "{kept}");
    }
    for b in &blobs {
        assert!(local_path(&root, b).exists(), "{b}");
    }
    let installed = dir.path().join("out");
    let r: crate::PackageRef = format!("o/p@{top}").parse().unwrap();
    registry.install(&r, &installed, &NoProgress).await.unwrap();
    assert!(registry.verify(&r, &installed, false, &NoProgress).await.unwrap().ok);

    // A second run finds only the fresh one.
    let again = registry.gc(&GcOptions { delete: true, ..opts }).await.unwrap();
    assert_eq!(again.garbage_files, 0);
}

#[tokio::test]
async fn symlinks_are_neither_followed_nor_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    let registry = Registry::open(root.to_str().unwrap()).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let precious = write(&outside, "precious#1", b"keep me", Some(2 * HOUR));
    std::fs::create_dir_all(root.join(".sheaf/tmp")).unwrap();
    std::os::unix::fs::symlink(&precious, root.join(".sheaf/tmp/link")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join(".sheaf/tmp/dirlink")).unwrap();
    let report = registry.gc(&GcOptions { older_than: Duration::ZERO, delete: true, ..Default::default() }).await;
    let report = report.unwrap();
    assert_eq!(report.removed_files, 0, "{report:?}");
    assert!(report.leftovers.iter().all(|l| l.action == Action::Kept));
    assert!(precious.exists() && root.join(".sheaf/tmp/link").exists());
    // A folder swapped for a link after the listing stops the removal.
    write(&root, ".sheaf/tmp/sub/victim", b"x", Some(2 * HOUR));
    std::fs::rename(root.join(".sheaf/tmp/sub"), dir.path().join("moved")).unwrap();
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    let target = write(&outside, "sub/victim", b"outside", Some(2 * HOUR));
    std::os::unix::fs::symlink(&outside, root.join(".sheaf/tmp/sub")).unwrap();
    let err = unlink_local(&root, ".sheaf/tmp/sub/victim", SystemTime::now()).unwrap_err();
    assert!(err.raw_os_error() == Some(libc::ELOOP) || err.raw_os_error() == Some(libc::ENOTDIR), "{err}");
    assert!(target.exists());
}

#[tokio::test]
async fn leftovers_a_manifest_references_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    let registry = Registry::open(root.to_str().unwrap()).unwrap();
    let odd = write(&root, ".sheaf/tmp/used", b"odd", Some(2 * HOUR));
    let url = url::Url::from_file_path(&odd).unwrap();
    let manifest = format!(
        "{{\"version\": \"v0\", \"message\": null}}\n{{\"logical_key\": \"x\", \"physical_keys\": [\"{url}\"], \"size\": 3, \"hash\": {{\"type\": \"SHA256\", \"value\": \"00\"}}}}\n"
    );
    write(&root, &format!("{MANIFESTS}/{}", "1".repeat(64)), manifest.as_bytes(), None);
    let report = registry.gc(&GcOptions { older_than: Duration::ZERO, delete: true, ..Default::default() }).await;
    let report = report.unwrap();
    assert_eq!(by_path(&report), vec![(".sheaf/tmp/used".to_owned(), Action::Kept)]);
    assert!(odd.exists());
}

#[tokio::test]
async fn an_unreadable_manifest_stops_gc_before_anything_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("reg");
    let registry = Registry::open(root.to_str().unwrap()).unwrap();
    let partial = write(&root, &format!("{BLOBS}/{}#1", "a".repeat(64)), b"x", Some(2 * HOUR));
    let name = "2".repeat(64);
    write(&root, &format!("{MANIFESTS}/{name}"), b"{\"version\": \"v0\"}\n{truncated", None);
    let err = registry.gc(&GcOptions { delete: true, ..Default::default() }).await.unwrap_err();
    assert!(err.to_string().contains(&name), "{err}");
    assert!(partial.exists());
}

#[tokio::test]
async fn object_stores_are_listed_and_cleaned_through_the_store() {
    let registry = Registry::open("memory://gc-test").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, blobs) = pushed(dir.path(), &registry).await;
    let orphan = format!("{BLOBS}/{}", "d".repeat(64));
    let partial = format!("{}#1", blobs[1]);
    for rel in [partial.as_str(), ".sheaf/tmp/7-7", orphan.as_str()] {
        registry.store().put(&Path::parse(rel).unwrap(), PutPayload::from_static(b"junk")).await.unwrap();
    }
    // Just written: the default grace period keeps them all.
    let young = registry.gc(&GcOptions { unreferenced: true, delete: true, ..Default::default() }).await.unwrap();
    assert_eq!((young.garbage_files, young.kept_files), (0, 3), "{young:?}");

    let opts = GcOptions { older_than: Duration::ZERO, unreferenced: false, delete: true };
    let done = registry.gc(&opts).await.unwrap();
    assert_eq!(by_path(&done), vec![(partial.clone(), Action::Removed), (".sheaf/tmp/7-7".into(), Action::Removed)]);
    let done = registry.gc(&GcOptions { unreferenced: true, ..opts }).await.unwrap();
    assert_eq!(by_path(&done), vec![(orphan.clone(), Action::Removed)]);
    for b in &blobs {
        registry.store().head(&Path::parse(b).unwrap()).await.unwrap();
    }
    assert!(registry.store().head(&Path::parse(&orphan).unwrap()).await.is_err());
}

/// Fails deletes of paths containing `stuck`; everything else passes through.
#[derive(Debug)]
struct StuckDeletes(std::sync::Arc<dyn object_store::ObjectStore>);

impl std::fmt::Display for StuckDeletes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StuckDeletes({})", self.0)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for StuckDeletes {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.0.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.0.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
        let inner = self.0.clone();
        locations
            .and_then(move |p| {
                let inner = inner.clone();
                async move {
                    if p.as_ref().contains("stuck") {
                        return Err(object_store::Error::Generic { store: "test", source: "access denied".into() });
                    }
                    inner.delete(&p).await.map(|()| p)
                }
            })
            .boxed()
    }
    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.0.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<object_store::ListResult> {
        self.0.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, options: object_store::CopyOptions) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_failed_removal_is_reported_and_the_others_go_on() {
    let inner: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::memory::InMemory::new());
    let registry = Registry::with_store("memory://gc-stuck", std::sync::Arc::new(StuckDeletes(inner))).unwrap();
    let paths = [".sheaf/tmp/1-1", ".sheaf/tmp/stuck-2", ".sheaf/blobs/ab#3"];
    for rel in paths {
        registry.store().put(&Path::parse(rel).unwrap(), PutPayload::from_static(b"junk")).await.unwrap();
    }
    let opts = GcOptions { older_than: Duration::ZERO, unreferenced: true, delete: true };
    let report = registry.gc(&opts).await.unwrap();
    assert!(!report.ok());
    assert_eq!((report.removed_files, report.failed_files, report.removed_bytes), (2, 1, 8));
    let failed = report.leftovers.iter().find(|l| l.action == Action::Failed).unwrap();
    assert_eq!(failed.path, ".sheaf/tmp/stuck-2");
    let detail = failed.detail.as_deref().unwrap();
    assert!(detail.contains(".sheaf/tmp/stuck-2") && detail.contains("access denied"), "{detail}");
    let left: Vec<Path> = registry.store().list(None).map_ok(|m| m.location).try_collect().await.unwrap();
    assert_eq!(left, vec![Path::parse(".sheaf/tmp/stuck-2").unwrap()]);
}
