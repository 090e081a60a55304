//! The query layer's error type; the Flight service maps it to gRPC status
//! codes in one place (`flight::status`).
//!
//! Errors from DataFusion and Arrow keep their source and are classified by
//! type, not by message text: an error caused by the request's own
//! expression meeting the data (division by zero, a bad cast, an overflow, a
//! regular expression too big to compile) is the client's to fix; a storage
//! failure is worth a retry; anything else is the server's fault.

use crate::registry;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

/// Errors from planning or executing a read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad URI, column, filter or parameter (the parser's message included).
    #[error("{0}")]
    Invalid(String),
    /// A column the table does not have (the message names the table and
    /// its columns).
    #[error("{message}")]
    UnknownColumn {
        /// The column asked for.
        column: String,
        /// The whole message.
        message: String,
    },
    /// A table or path that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Errors from the registry (packages, revisions, data).
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// Evaluating the request's expressions on the data failed: division by
    /// zero, a cast or parse of a value, an overflow, a pattern too big.
    #[error("{context}: {}", root_message(source))]
    Evaluation {
        /// What was being done, naming the table.
        context: String,
        /// The engine's error.
        #[source]
        source: DataFusionError,
    },
    /// Storage failed while the engine read table data.
    #[error("{context}: storage failed: {}", crate::registry::hide_credentials(&root_message(source)))]
    Storage {
        /// What was being read.
        context: String,
        /// The engine's error, holding the store's.
        #[source]
        source: DataFusionError,
    },
    /// A memory or other resource limit of the request was reached.
    #[error("{context}: {}", root_message(source))]
    Exhausted {
        /// What was being done.
        context: String,
        /// The engine's error.
        #[source]
        source: DataFusionError,
    },
    /// Stored table data that cannot be decoded (a Parquet page that does
    /// not decompress, a column chunk cut short): damaged or never valid.
    #[error("{context}: the stored data cannot be decoded: {}", root_message(source))]
    Corrupt {
        /// What was being read.
        context: String,
        /// The engine's error, holding the decoder's.
        #[source]
        source: DataFusionError,
    },
    /// Any other failure inside the engine (a bug).
    #[error("{context}: {}", root_message(source))]
    Engine {
        /// What was being done.
        context: String,
        /// The engine's error.
        #[source]
        source: DataFusionError,
    },
    /// The request ran past its time limit.
    #[error("{0}")]
    TimedOut(String),
    /// The client cancelled the request.
    #[error("{0}")]
    Cancelled(String),
    /// The request would write, and this path only reads (SQL).
    #[error("{0}")]
    ReadOnly(String),
    /// A task serving the request panicked; the request failed as a whole.
    #[error("{0}: internal error (a task panicked)")]
    Panicked(String),
}

/// A panic's message, for logs (its payload when it is text).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// The message of the innermost error of the chain, without a backtrace.
fn root_message(e: &DataFusionError) -> String {
    let mut last: &(dyn std::error::Error + 'static) = e.find_root();
    while let Some(next) = last.source() {
        last = next;
    }
    match last.downcast_ref::<DataFusionError>() {
        Some(df) => df.strip_backtrace(),
        None => last.to_string(),
    }
}

/// The first Arrow error in `e`'s chain of sources that is not a wrapper
/// of another error (`ExternalError`).
fn arrow_in_chain(e: &DataFusionError) -> Option<&ArrowError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        let arrow = match err.downcast_ref::<DataFusionError>() {
            Some(DataFusionError::ArrowError(arrow, _)) => Some(arrow.as_ref()),
            _ => err.downcast_ref::<ArrowError>(),
        };
        if let Some(arrow) = arrow.filter(|a| !matches!(a, ArrowError::ExternalError(_))) {
            return Some(arrow);
        }
        current = err.source();
    }
    None
}

/// The first Parquet error in `e`'s chain of sources.
fn parquet_in_chain(e: &DataFusionError) -> Option<&parquet::errors::ParquetError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        let parquet = match err.downcast_ref::<DataFusionError>() {
            Some(DataFusionError::ParquetError(p)) => Some(p.as_ref()),
            _ => err.downcast_ref::<parquet::errors::ParquetError>(),
        };
        if parquet.is_some() {
            return parquet;
        }
        current = err.source();
    }
    None
}

/// Whether an object-store error is anywhere in `e`'s chain of sources.
pub(crate) fn from_storage(e: &DataFusionError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err.downcast_ref::<object_store::Error>().is_some() || err.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        if let Some(DataFusionError::ObjectStore(_) | DataFusionError::IoError(_)) =
            err.downcast_ref::<DataFusionError>()
        {
            return true;
        }
        current = err.source();
    }
    false
}

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Wraps an engine error with what was being done, classified by type.
    pub(crate) fn engine(context: impl Into<String>, e: impl Into<DataFusionError>) -> Self {
        let (context, source) = (context.into(), e.into());
        if from_storage(&source) {
            return Error::Storage { context, source };
        }
        // An Arrow error anywhere in the chain (a filter pushed into the
        // Parquet decoder comes back wrapped in a Parquet error) decides.
        if let Some(arrow) = arrow_in_chain(&source) {
            return match arrow {
                ArrowError::DivideByZero
                | ArrowError::CastError(_)
                | ArrowError::ArithmeticOverflow(_)
                | ArrowError::ComputeError(_)
                | ArrowError::InvalidArgumentError(_)
                | ArrowError::ParseError(_)
                | ArrowError::OffsetOverflowError(_) => Error::Evaluation { context, source },
                ArrowError::MemoryError(_) => Error::Exhausted { context, source },
                // The Parquet reader's failure, as text (see below).
                ArrowError::ParquetError(text) if !text.contains("NYI") && !text.contains("not yet implemented") => {
                    Error::Corrupt { context, source }
                }
                _ => Error::Engine { context, source },
            };
        }
        // The Parquet decoder's own failure (not an unsupported feature):
        // the bytes are not what their footer says.
        if parquet_in_chain(&source).is_some_and(|p| {
            !matches!(p, parquet::errors::ParquetError::NYI(_) | parquet::errors::ParquetError::NeedMoreData(_))
        }) {
            return Error::Corrupt { context, source };
        }
        // Sheaf's own error, raised inside the engine and shared between
        // partitions (it cannot be moved out), or a regular expression of
        // the statement that does not compile.
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&source);
        while let Some(err) = current {
            match err.downcast_ref::<Error>() {
                Some(
                    Error::Invalid(_) | Error::UnknownColumn { .. } | Error::Evaluation { .. } | Error::NotFound(_),
                ) => {
                    return Error::Evaluation { context, source };
                }
                Some(Error::Exhausted { .. }) => return Error::Exhausted { context, source },
                Some(Error::Storage { .. }) => return Error::Storage { context, source },
                Some(_) => break,
                None if err.downcast_ref::<regex::Error>().is_some()
                    || err.downcast_ref::<regex_syntax::Error>().is_some() =>
                {
                    return Error::Evaluation { context, source };
                }
                None => current = err.source(),
            }
        }
        match source.find_root() {
            DataFusionError::ResourcesExhausted(_) => Error::Exhausted { context, source },
            DataFusionError::Plan(_)
            | DataFusionError::SQL(..)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Execution(_) => Error::Evaluation { context, source },
            _ => Error::Engine { context, source },
        }
    }

    /// Names the table (`path` in `package`) in the context of an engine
    /// error raised while its rows were read.
    pub(crate) fn in_table(self, path: &str, package: &str) -> Self {
        let name = |context: String| match context.contains(path) || path.is_empty() {
            true => format!("{context} in {package}"),
            false => format!("{context} of {path} in {package}"),
        };
        match self {
            Error::Evaluation { context, source } => Error::Evaluation { context: name(context), source },
            Error::Storage { context, source } => Error::Storage { context: name(context), source },
            Error::Exhausted { context, source } => Error::Exhausted { context: name(context), source },
            Error::Engine { context, source } => Error::Engine { context: name(context), source },
            Error::Corrupt { context, source } => Error::Corrupt { context: name(context), source },
            Error::Panicked(context) => Error::Panicked(name(context)),
            other => other,
        }
    }

    /// An internal inconsistency found by Sheaf itself.
    pub(crate) fn internal(context: impl Into<String>, what: impl Into<String>) -> Self {
        Error::Engine { context: context.into(), source: DataFusionError::Internal(what.into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_type_not_text() {
        let e = Error::engine("reading t", ArrowError::DivideByZero);
        assert!(matches!(e, Error::Evaluation { .. }), "{e:?}");
        assert!(e.to_string().contains("Divide by zero"), "{e}");
        let store = object_store::Error::Generic { store: "S3", source: "connection reset".into() };
        let e = Error::engine("reading t", DataFusionError::ObjectStore(Box::new(store)));
        assert!(matches!(e, Error::Storage { .. }), "{e:?}");
        let nested = DataFusionError::Context(
            "scan".into(),
            Box::new(DataFusionError::ResourcesExhausted("memory pool".into())),
        );
        assert!(matches!(Error::engine("t", nested), Error::Exhausted { .. }));
        assert!(matches!(Error::internal("t", "halves differ"), Error::Engine { .. }));
        let pages = parquet::errors::ParquetError::External("snappy: corrupt input".into());
        let e = Error::engine("reading t.parquet", DataFusionError::ParquetError(Box::new(pages)));
        assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("the stored data cannot be decoded: snappy: corrupt input"), "{e}");
        let text = ArrowError::ParquetError("External: snappy: corrupt input".into());
        assert!(matches!(Error::engine("reading t.parquet", text), Error::Corrupt { .. }));
        let nyi = parquet::errors::ParquetError::NYI("a new encoding".into());
        assert!(matches!(Error::engine("t", DataFusionError::ParquetError(Box::new(nyi))), Error::Engine { .. }));
        // An Arrow wrapper around a resource error is a resource error.
        let wrapped = DataFusionError::ArrowError(
            Box::new(ArrowError::ExternalError(Box::new(DataFusionError::ResourcesExhausted("pool".into())))),
            None,
        );
        assert!(matches!(Error::engine("t", wrapped), Error::Exhausted { .. }));
        let e = Error::engine(
            "t",
            DataFusionError::External(Box::new(object_store::Error::Generic { store: "x", source: "y".into() })),
        );
        assert!(matches!(e, Error::Storage { .. }), "{e:?}");
        // Sheaf's own error shared between partitions, a bad regular expression.
        let ours = Error::invalid("cannot read t.csv as csv: a value changed type");
        let shared = DataFusionError::Shared(std::sync::Arc::new(DataFusionError::External(Box::new(ours))));
        let e = Error::engine("running", shared);
        assert!(matches!(e, Error::Evaluation { .. }), "{e:?}");
        assert!(e.to_string().contains("t.csv"), "{e}");
        let unclosed = String::from("(");
        let regex = regex::Regex::new(&unclosed).unwrap_err();
        assert!(matches!(
            Error::engine("planning", DataFusionError::External(Box::new(regex))),
            Error::Evaluation { .. }
        ));
        let syntax = regex_syntax::Parser::new().parse(&unclosed).unwrap_err();
        let planned =
            DataFusionError::Context("Invalid regex".into(), Box::new(DataFusionError::External(Box::new(syntax))));
        assert!(matches!(Error::engine("planning", planned), Error::Evaluation { .. }));
    }
}
