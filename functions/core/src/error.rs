//! Typed errors at the library boundary. Each says which class of refusal it is, so the HTTP
//! layer maps it to MLRun's status codes without parsing messages.

use std::sync::Arc;

/// Why an operation was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The caller's role does not allow it (403). Checked before a request reaches the service,
    /// except where the answer depends on the request's content (which projects a token is for).
    #[error("{0}")]
    Forbidden(String),
    /// An operator limit forbids it (412, `MLRunPreconditionFailedError`).
    #[error("{0}")]
    PreconditionFailed(String),
    /// The store, or a service it relies on, failed; nothing the caller did wrong (503). The
    /// source says what failed, for the log; the caller is told only to retry.
    #[error("{backend} failed: {source}")]
    Backend {
        backend: Backend,
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

/// What failed behind a [`Error::Backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The in-memory state (an inconsistency: a bug).
    Memory,
    /// The embedded store of `tocsin serve` (fjall, its writer thread).
    Embedded,
    DynamoDb,
    Sns,
    Sqs,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Memory => "the in-memory store",
            Backend::Embedded => "the embedded store",
            Backend::DynamoDb => "DynamoDB",
            Backend::Sns => "SNS",
            Backend::Sqs => "SQS",
        })
    }
}

impl Error {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        Error::BadRequest(msg.into())
    }

    /// A failure of `backend`, caused by `source` (an error, or a message saying what went
    /// wrong).
    pub fn backend(
        backend: Backend,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Backend {
            backend,
            source: Arc::from(source.into()),
        }
    }
}

/// Refusals compare by class and message; backend failures by what failed and how it reads.
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Error::Backend {
                    backend: a,
                    source: x,
                },
                Error::Backend {
                    backend: b,
                    source: y,
                },
            ) => a == b && x.to_string() == y.to_string(),
            (Error::Backend { .. }, _) | (_, Error::Backend { .. }) => false,
            _ => {
                std::mem::discriminant(self) == std::mem::discriminant(other)
                    && self.to_string() == other.to_string()
            }
        }
    }
}

impl Eq for Error {}

/// Results of Tocsin's core operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
