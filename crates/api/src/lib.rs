//! The fundtrail gRPC API: code generated from `proto/fundtrail/v1` and the
//! one place where protobuf messages become domain types and back.
//!
//! A signed payload is decoded here ([`decode_request`]); everything that can
//! be wrong with its shape (unknown enum value, missing body, a key of the
//! wrong length) becomes a [`Rejection`] with code `InvalidArgument` naming
//! the field.

pub mod convert;

/// Generated messages and service stubs of package `fundtrail.v1`.
#[cfg(feature = "grpc")]
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("fundtrail.v1");
}

/// Generated messages of package `fundtrail.v1` (built without `grpc`).
#[cfg(not(feature = "grpc"))]
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/messages/fundtrail.v1.rs"));
}

/// The encoded `FileDescriptorSet` of the API, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fundtrail_descriptor.bin"));

pub use convert::*;
