//! Compiles proto/fundtrail/v1 with a pure-Rust protobuf compiler (protox), so
//! building needs no system `protoc`, and writes the encoded descriptor set
//! for server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "records.proto",
        "ledger.proto",
        "query.proto",
        "audit.proto",
    ]
    .map(|name| proto_root.join("fundtrail/v1").join(name));
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("fundtrail_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    // Messages alone for the record format; with the service stubs for gRPC.
    let messages = out_dir.join("messages");
    std::fs::create_dir_all(&messages)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&messages)
        .compile_fds(descriptors.clone())?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
