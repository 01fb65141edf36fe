//! Compiles `proto/*.proto` with protox (a protobuf compiler written in Rust), so that a fresh
//! machine builds this crate with cargo alone: no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/account.proto", "proto/statistic.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors)?;
    Ok(())
}
