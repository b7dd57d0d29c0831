//! Typed errors at the library boundary. Each says which class of refusal it is, so the HTTP
//! layer maps it to MLRun's status codes without parsing messages.

/// Why an operation was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed or contradicts itself (400, `MLRunBadRequestError`).
    #[error("{0}")]
    BadRequest(String),
    /// A value is outside its vocabulary or of the wrong shape (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The thing asked for does not exist (404, `MLRunNotFoundError`).
    #[error("{0}")]
    NotFound(String),
    /// An operator limit forbids it (412, `MLRunPreconditionFailedError`).
    #[error("{0}")]
    PreconditionFailed(String),
    /// The store failed; nothing the caller did wrong (500/503).
    #[error("store failure: {0}")]
    Store(String),
}

impl Error {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }
}

/// Results of Tocsin's core operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
