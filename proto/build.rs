//! Generates the prost messages and tonic services from `tunefleet/v1/tunefleet.proto`.
//!
//! `protoc` comes from `protoc-bin-vendored`, so a fresh machine needs no system package; a
//! `PROTOC` variable in the environment overrides it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: a build script runs on one thread, and nothing else reads the environment here.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    println!("cargo:rerun-if-changed=tunefleet/v1/tunefleet.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["tunefleet/v1/tunefleet.proto"], &["."])?;
    Ok(())
}
