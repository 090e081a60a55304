//! The query layer's error type; the Flight service maps it to gRPC status
//! codes in one place (`flight::status`).

use crate::registry;

/// Errors from planning or executing a read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad URI, column, filter or parameter (the parser's message included).
    #[error("{0}")]
    Invalid(String),
    /// A table or path that does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Errors from the registry (packages, revisions, data).
    #[error(transparent)]
    Registry(#[from] registry::Error),
    /// Errors from DataFusion or Arrow while reading.
    #[error("{context}: {message}")]
    Engine {
        /// What was being read.
        context: String,
        /// The engine's message.
        message: String,
    },
}

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub(crate) fn engine(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Error::Engine { context: context.into(), message: e.to_string() }
    }
}
