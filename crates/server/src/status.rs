//! The one mapping from domain refusals to gRPC statuses (docs/design.md §8).

use fundtrail_core::{Code, Error, Rejection};
use tonic_types::{ErrorDetails, StatusExt};

pub fn code(code: Code) -> tonic::Code {
    match code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::Unauthenticated => tonic::Code::Unauthenticated,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::NotFound => tonic::Code::NotFound,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::Unavailable => tonic::Code::Unavailable,
    }
}

/// The status of a failed call. A refusal's message is the clerk-readable
/// text and its rich error details (google.rpc.BadRequest) name the field at
/// fault; a storage fault is UNAVAILABLE, logged, and never blamed on the
/// request.
pub fn status(error: impl Into<Error>) -> tonic::Status {
    match error.into() {
        Error::Refused(rejection) => refusal(rejection),
        Error::Fault(fault) => {
            tracing::error!(kind = fault.kind.name(), %fault, "storage fault while answering a call");
            tonic::Status::unavailable(format!(
                "the ledger's store failed ({fault}); the operators have been told. Try again later"
            ))
        }
    }
}

fn refusal(rejection: Rejection) -> tonic::Status {
    let code = code(rejection.code);
    if rejection.field.is_empty() {
        return tonic::Status::new(code, rejection.message);
    }
    let details =
        ErrorDetails::with_bad_request_violation(rejection.field, rejection.message.clone());
    tonic::Status::with_error_details(code, rejection.message, details)
}
