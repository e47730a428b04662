//! Why a request was refused, classified the way docs/design.md §8 maps to gRPC.

/// The class of a refusal; the server maps each to one gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Malformed input, zero or overflowing amount, unknown enum value.
    InvalidArgument,
    /// Bad or unknown signature or key.
    Unauthenticated,
    /// The key may not debit that account or do that act.
    PermissionDenied,
    NotFound,
    /// Insufficient balance of a source, household not registered, and the like.
    FailedPrecondition,
    /// Idempotency key reused with a different payload; id already taken.
    AlreadyExists,
    /// A limit was exceeded.
    ResourceExhausted,
    /// The ledger is not taking writes (stopped after a fault, or read-only).
    Unavailable,
}

impl Code {
    /// The gRPC status code's name, as the access log records it.
    pub fn grpc_name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::Unavailable => "UNAVAILABLE",
        }
    }
}

/// A refused request: what was wrong, and in which field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub code: Code,
    /// The request field at fault (dotted path), or empty.
    pub field: String,
    /// Says what was wrong in words a finance clerk understands.
    pub message: String,
}

impl Rejection {
    pub fn new(code: Code, field: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection {
            code,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, field, message)
    }

    pub fn denied(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, field, message)
    }

    pub fn not_found(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, field, message)
    }

    pub fn precondition(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, field, message)
    }

    pub fn exists(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Code::AlreadyExists, field, message)
    }

    pub fn unauthenticated(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, field, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, "", message)
    }
}

/// The store failed: I/O, corruption, or our own stored data that does not
/// decode. Never the client's fault, so never answered as a refusal: a fault
/// while applying a batch stops writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Fault(pub String);

impl Fault {
    pub fn new(message: impl Into<String>) -> Self {
        Fault(message.into())
    }
}

/// Why an operation did not happen: the request was refused, or the store
/// failed. Callers that answer clients keep the two apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] Rejection),
    #[error("the ledger's store failed: {0}")]
    Fault(#[from] Fault),
}
