//! Where bytes live: opening a registry URL as an object store, and resolving
//! an entry's physical key (a URL that may point outside the registry) to a
//! store and path, subject to a [`ReadPolicy`].

use super::Error;
use super::beneath::Beneath;
use super::metered::Metered;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use url::Url;

/// A parsed registry or physical-key location.
#[derive(Debug, Clone)]
pub struct Location {
    /// Normalized URL of the registry root, without a trailing slash.
    pub url: Url,
    /// The local folder, for `file://` registries.
    pub local_root: Option<PathBuf>,
}

impl Location {
    /// Parses `--registry`: a local path, `file://`, `memory://NAME`,
    /// `s3://bucket[/prefix]`, `gs://bucket[/prefix]` or `az://container[/prefix]`.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(Error::invalid("the registry location is empty"));
        }
        let url = match Url::parse(spec) {
            Ok(url) if url.scheme().len() > 1 => url,
            // No scheme (or a Windows drive letter): a local path.
            _ => {
                let path =
                    std::path::absolute(spec).map_err(|e| Error::invalid(format!("registry path {spec:?}: {e}")))?;
                Url::from_directory_path(&path)
                    .map_err(|_| Error::invalid(format!("registry path {spec:?} is not absolute")))?
            }
        };
        Self::from_url(url)
    }

    fn from_url(mut url: Url) -> Result<Self, Error> {
        // A URL's credentials would be printed and logged wherever the
        // registry is named, and no store reads them from there.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid(format!(
                "registry URL {} holds credentials (user:password@), which are never read from a URL: S3 takes them \
                 from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or its profile, GCS and Azure from their own \
                 environment variables; remove them from the URL",
                super::hide_credentials(url.as_str())
            )));
        }
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| Error::invalid(format!("registry URL {url} is not a local path")))?;
                let mut url = Url::from_directory_path(&path).expect("absolute path");
                trim_slash(&mut url);
                Ok(Location { url, local_root: Some(path) })
            }
            "memory" | "s3" | "gs" | "az" => {
                if url.host_str().unwrap_or("").is_empty() && url.scheme() != "memory" {
                    return Err(Error::invalid(format!("registry URL {url} names no bucket")));
                }
                url.set_query(None);
                url.set_fragment(None);
                trim_slash(&mut url);
                Ok(Location { url, local_root: None })
            }
            other => Err(Error::invalid(format!(
                "unsupported registry scheme {other:?} in {url}: use a path, file://, memory://, s3://, gs:// or az://"
            ))),
        }
    }

    /// Opens the registry root as an object store whose paths are relative to it.
    pub fn open(&self) -> Result<Arc<dyn ObjectStore>, Error> {
        if let Some(root) = &self.local_root {
            std::fs::create_dir_all(root).map_err(|e| Error::io(root.display().to_string(), e))?;
            let store = LocalFileSystem::new_with_prefix(root)
                .map_err(|e| Error::storage(format!("opening registry {}", self.url), e))?;
            // Reads never follow a symbolic link inside the registry.
            let store = Beneath::wrap(Arc::new(store), root).map_err(|e| Error::io(root.display().to_string(), e))?;
            return Ok(Metered::wrap(store));
        }
        let (store, prefix) = open_bucket(&self.url)?;
        Ok(if prefix.as_ref().is_empty() { store } else { Arc::new(PrefixStore::new(store, prefix)) })
    }

    /// The URL of `key` (a registry-relative path) inside this registry, as
    /// written into manifests' physical keys.
    pub fn url_of(&self, key: &Path) -> String {
        let mut url = self.url.clone();
        url.path_segments_mut()
            .expect("hierarchical URL")
            .pop_if_empty()
            .extend(key.parts().map(|p| p.as_ref().to_owned()));
        url.to_string()
    }
}

fn trim_slash(url: &mut Url) {
    if url.path().len() > 1 && url.path().ends_with('/') {
        let p = url.path().trim_end_matches('/').to_owned();
        url.set_path(&p);
    }
}

type BucketCache = Mutex<HashMap<String, Arc<dyn ObjectStore>>>;

/// `memory://NAME` stores live for the process so that several opens of the
/// same URL (as in tests) share data.
static MEMORY: LazyLock<BucketCache> = LazyLock::new(Default::default);
/// Cloud stores are built once per bucket (they hold connection pools).
static BUCKETS: LazyLock<BucketCache> = LazyLock::new(Default::default);

/// Opens the bucket of a cloud or memory URL, returning the store and the path
/// of the URL inside it.
fn open_bucket(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path), Error> {
    let bucket = url.host_str().unwrap_or("").to_owned();
    let prefix = Path::from_url_path(url.path()).map_err(|e| Error::invalid(format!("bad path in {url}: {e}")))?;
    let cache_key = format!("{}://{bucket}", url.scheme());
    let cache = if url.scheme() == "memory" { &MEMORY } else { &BUCKETS };
    let mut stores = cache.lock().expect("store cache poisoned");
    if let Some(store) = stores.get(&cache_key) {
        return Ok((store.clone(), prefix));
    }
    let built: Arc<dyn ObjectStore> = Metered::wrap(match url.scheme() {
        "memory" => Arc::new(InMemory::new()),
        "s3" => Arc::new(
            AmazonS3Builder::from_env()
                .with_bucket_name(&bucket)
                .build()
                .map_err(|e| Error::storage(format!("configuring S3 for {url}"), e))?,
        ),
        "gs" => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&bucket)
                .build()
                .map_err(|e| Error::storage(format!("configuring GCS for {url}"), e))?,
        ),
        "az" => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_container_name(&bucket)
                .build()
                .map_err(|e| Error::storage(format!("configuring Azure for {url}"), e))?,
        ),
        other => return Err(Error::invalid(format!("unsupported scheme {other:?} in {url}"))),
    });
    stores.insert(cache_key, built.clone());
    Ok((built, prefix))
}

/// Which physical keys outside the registry may be read.
///
/// The CLI acts for its user and follows any physical key
/// ([`ReadPolicy::AllowAll`]). A server must not let a manifest make it read
/// arbitrary files, so it uses [`ReadPolicy::AllowList`]: the registry itself is
/// always allowed, plus the listed location prefixes.
#[derive(Debug, Clone)]
pub enum ReadPolicy {
    /// Follow every physical key.
    AllowAll,
    /// Follow only keys inside these locations (compared by path segment).
    AllowList(Vec<Url>),
}

impl ReadPolicy {
    /// An allow-list built from location specs (paths or URLs).
    pub fn allow_list<I: IntoIterator<Item = S>, S: AsRef<str>>(specs: I) -> Result<Self, Error> {
        let urls = specs.into_iter().map(|s| Location::parse(s.as_ref()).map(|l| l.url)).collect::<Result<_, _>>()?;
        Ok(ReadPolicy::AllowList(urls))
    }

    fn allows(&self, url: &Url) -> bool {
        match self {
            ReadPolicy::AllowAll => true,
            ReadPolicy::AllowList(roots) => roots.iter().any(|root| url_within(url, root)),
        }
    }
}

/// Whether `url` is `root` or lies below it, comparing decoded path segments.
/// URLs with `.` or `..` segments are never within anything.
pub(crate) fn url_within(url: &Url, root: &Url) -> bool {
    if url.scheme() != root.scheme() || url.host_str() != root.host_str() || url.port() != root.port() {
        return false;
    }
    let segments = |u: &Url| -> Option<Vec<String>> {
        u.path_segments().map(|s| {
            s.filter(|p| !p.is_empty())
                .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
                .collect()
        })
    };
    let (Some(path), Some(root_path)) = (segments(url), segments(root)) else {
        return false;
    };
    if path.iter().any(|s| s == "." || s == ".." || s.contains('/')) {
        return false;
    }
    path.starts_with(&root_path)
}

/// A physical key resolved to a store, a path in it, and an object version.
pub struct Resolved {
    /// The store holding the object.
    pub store: Arc<dyn ObjectStore>,
    /// The object's path in that store.
    pub path: Path,
    /// An S3 `versionId`, when the key pins one.
    pub version: Option<String>,
}

/// Resolves a physical key outside the registry. The caller has already
/// handled keys inside the registry.
pub(crate) fn resolve_external(physical_key: &str, policy: &ReadPolicy) -> Result<Resolved, Error> {
    let url = Url::parse(physical_key)
        .map_err(|e| Error::invalid(format!("physical key {physical_key:?} is not a URL: {e}")))?;
    let url = match url.scheme() {
        // Follow symlinks before the policy check, so a link inside an allowed
        // folder cannot lead outside it.
        "file" => {
            let path = url
                .to_file_path()
                .map_err(|_| Error::invalid(format!("physical key {physical_key} is not a local path")))?;
            match std::fs::canonicalize(&path) {
                Ok(real) => Url::from_file_path(real).expect("canonical paths are absolute"),
                Err(_) => url,
            }
        }
        _ => url,
    };
    if !policy.allows(&url) {
        return Err(Error::Forbidden { physical_key: physical_key.to_owned(), logical_key: String::new() });
    }
    let version = url.query_pairs().find(|(k, _)| k == "versionId").map(|(_, v)| v.into_owned());
    match url.scheme() {
        "file" => {
            let path = url
                .to_file_path()
                .map_err(|_| Error::invalid(format!("physical key {physical_key} is not a local path")))?;
            let path = Path::from_absolute_path(&path)
                .map_err(|e| Error::invalid(format!("physical key {physical_key}: {e}")))?;
            // Opened from `/` without following links: the key was compared
            // with the allow-list as its real path, and a link swapped in
            // since cannot redirect the read.
            let store = Beneath::wrap(Arc::new(LocalFileSystem::new()), std::path::Path::new("/"))
                .map_err(|e| Error::io("/", e))?;
            Ok(Resolved { store: Metered::wrap(store), path, version: None })
        }
        "s3" | "gs" | "az" | "memory" => {
            let (store, path) = open_bucket(&url)?;
            Ok(Resolved { store, path, version })
        }
        other => Err(Error::invalid(format!("unsupported scheme {other:?} in physical key {physical_key}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_compares_segments() {
        let root = Url::parse("file:///data/allowed").unwrap();
        assert!(url_within(&Url::parse("file:///data/allowed/x.parquet").unwrap(), &root));
        assert!(!url_within(&Url::parse("file:///data/allowed-not/x").unwrap(), &root));
        assert!(!url_within(&Url::parse("file:///etc/passwd").unwrap(), &root));
        assert!(!url_within(&Url::parse("s3://data/allowed/x").unwrap(), &root));
        assert!(!url_within(&Url::parse("s3://b/allowed/%2e%2e/x").unwrap(), &Url::parse("s3://b/allowed").unwrap()));
    }

    #[test]
    fn policy_refuses_outside_keys_before_reading() {
        let policy = ReadPolicy::allow_list(["/data/allowed"]).unwrap();
        let err = resolve_external("file:///etc/passwd", &policy).err().unwrap();
        assert!(matches!(err, Error::Forbidden { .. }), "{err}");
        assert!(err.to_string().contains("/etc/passwd"));
    }

    #[test]
    fn locations_parse() {
        let l = Location::parse("s3://bucket/some/prefix/").unwrap();
        assert_eq!(l.url.as_str(), "s3://bucket/some/prefix");
        assert_eq!(l.url_of(&Path::from(".sheaf/blobs/ab")), "s3://bucket/some/prefix/.sheaf/blobs/ab");
        let l = Location::parse("/tmp/reg").unwrap();
        assert_eq!(l.url.as_str(), "file:///tmp/reg");
        assert_eq!(l.url_of(&Path::from("x")), "file:///tmp/reg/x");
        assert!(Location::parse("ftp://x").is_err());
    }
}
