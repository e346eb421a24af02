//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates prost types
//! plus serde impls that follow the canonical proto3 JSON mapping (pbjson).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "feepay/v1/common.proto",
        "feepay/v1/payments.proto",
        "feepay/v1/assessment.proto",
        "feepay/v1/receipts.proto",
        "feepay/v1/notifications.proto",
        "feepay/v1/tax.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    #[allow(clippy::disallowed_methods)] // cargo hands a build script its output directory this way
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("feepay_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&descriptors))?;

    prost_build::Config::new()
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types")
        .skip_protoc_run()
        .compile_protos(&files, &[&root])?;

    let set = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .extern_path(".google.protobuf", "::pbjson_types")
        .build(&[".feepay"])?;
    Ok(())
}
