//! An object store wrapper that counts the bytes read from storage into
//! [`crate::metrics::BYTES_READ`] and its failed reads and writes into
//! [`crate::metrics::STORAGE_ERRORS`]. Every store the registry opens is
//! wrapped, so the figures cover manifests, footers and data alike. It also
//! checks that ranged reads return exactly the bytes asked for.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use std::ops::Range;
use std::sync::Arc;

/// Counts the bytes of every GET (the length of the range returned) and of
/// every `get_ranges` call. HEAD requests and listings are not counted.
#[derive(Debug)]
pub struct Metered(Arc<dyn ObjectStore>);

impl Metered {
    /// Wraps `store`.
    pub fn wrap(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(Metered(store))
    }
}

impl std::fmt::Display for Metered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for Metered {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        counted(self.0.put_opts(location, payload, opts).await)
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        let result = counted(self.0.get_opts(location, options).await)?;
        if !head {
            crate::metrics::BYTES_READ.add(result.range.end.saturating_sub(result.range.start));
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let data = counted(self.0.get_ranges(location, ranges).await)?;
        // A store that returns fewer (or more) bytes than a range asked for
        // fails here, not later in a decoder that assumes the lengths match.
        if data.len() != ranges.len() || data.iter().zip(ranges).any(|(d, r)| d.len() as u64 != r.end - r.start) {
            return Err(object_store::Error::Generic {
                store: "sheaf",
                source: format!("{location}: the store returned other lengths than the byte ranges asked for").into(),
            });
        }
        crate::metrics::BYTES_READ.add(data.iter().map(|b| b.len() as u64).sum());
        Ok(data)
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.0.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.0.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.0.rename_opts(from, to, options).await
    }
}

/// Counts a failed storage request in [`crate::metrics::STORAGE_ERRORS`]
/// ("not found" and "already exists" answer a question; they are not failures).
fn counted<T>(result: Result<T>) -> Result<T> {
    if let Err(e) = &result
        && !matches!(
            e,
            object_store::Error::NotFound { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotModified { .. }
        )
    {
        crate::metrics::STORAGE_ERRORS.add(1);
    }
    result
}
