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
/// while applying a batch stops writes. The kind says what an operator does
/// about it; the message says where, for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

/// What kind of thing failed, and so what mends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The medium failed an operation: the disk, the file system, the
    /// database or the connection to it. Mended where it failed; the ledger
    /// itself is intact.
    Io,
    /// What a store holds does not decode or contradicts itself: damage, or
    /// a bug that wrote it. Derived state is rebuilt from the journal; a
    /// damaged journal is restored from a replica.
    Corrupt,
    /// The ledger was written under rules or formats newer than this build
    /// knows. Mended by running a newer build.
    TooNew,
    /// The server broke a rule of its own (a stage asked for what it never
    /// keeps). A bug to report; restarting recovers from the journal.
    Bug,
}

impl FaultKind {
    /// The kind as metrics and logs name it.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Io => "io",
            FaultKind::Corrupt => "corrupt",
            FaultKind::TooNew => "too_new",
            FaultKind::Bug => "bug",
        }
    }
}

impl Fault {
    pub fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        Fault {
            kind,
            message: message.into(),
        }
    }

    pub fn io(message: impl Into<String>) -> Self {
        Self::new(FaultKind::Io, message)
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(FaultKind::Corrupt, message)
    }

    pub fn bug(message: impl Into<String>) -> Self {
        Self::new(FaultKind::Bug, message)
    }

    /// The same fault, its message prefixed by where it happened.
    pub fn during(self, what: impl std::fmt::Display) -> Self {
        Fault {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
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
