//! Progress reporting, kept out of the library's logic: operations report
//! bytes through this trait and the CLI draws them (with indicatif) only when
//! attached to a terminal.

/// Receives progress of a long operation, in bytes.
pub trait Progress: Send + Sync {
    /// A phase begins (`"hashing"`, `"uploading"`, ...) covering `total` bytes.
    fn start(&self, phase: &str, total: u64);
    /// `bytes` more were processed.
    fn advance(&self, bytes: u64);
    /// The current phase ended.
    fn finish(&self);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
