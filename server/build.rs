//! Compiles `proto/` into Rust (server side) with protox, a pure-Rust
//! protobuf compiler, so building needs no system `protoc`. The encoded
//! descriptor set is kept for gRPC server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let proto_file = proto_root.join("sessiond/v1/sessiond.proto");
    println!("cargo:rerun-if-changed={}", proto_file.display());

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_file(&proto_file)?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("sessiond_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // Type names let the request codec name the message that failed to
    // decode (see src/proto/request_codec.rs).
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(false)
        .codec_path("crate::proto::RequestCodec")
        .compile_fds_with_config(compiler.file_descriptor_set(), config)?;
    Ok(())
}
