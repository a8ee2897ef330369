//! Generates the barelb.control.v1 client and server from api/proto (needs
//! `protoc`, installed by scripts/setup as protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../proto/barelb/control/v1/control.proto";
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure().compile_protos(&[proto], &["../proto"])?;
    Ok(())
}
