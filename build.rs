//! Compiles `proto/sheaf.proto` with protox (a protobuf compiler in Rust), so
//! building Sheaf needs no system `protoc`.

fn main() {
    println!("cargo:rerun-if-changed=proto/sheaf.proto");
    let descriptors = protox::compile(["proto/sheaf.proto"], ["proto"]).expect("proto/sheaf.proto compiles");
    prost_build::Config::new().compile_fds(descriptors).expect("prost generates code");
}
