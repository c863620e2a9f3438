//! Generates the Rust types and the gRPC service for Tyk's coprocess protocol.
//!
//! `protox` parses the `.proto` files in Rust, so no system `protoc` is needed on
//! a developer machine, in CI or in the Docker builder.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/coprocess_common.proto",
        "proto/coprocess_return_overrides.proto",
        "proto/coprocess_mini_request_object.proto",
        "proto/coprocess_response_object.proto",
        "proto/coprocess_session_state.proto",
        "proto/coprocess_object.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Bodies cross the plugin as `bytes::Bytes`, so echoing them back is a
        // reference-count bump, not a copy.
        .bytes(".")
        // The fake gateway in tests/ and the benchmark tools are gRPC clients.
        .build_client(true)
        .compile_fds(descriptors)?;
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
