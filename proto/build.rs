//! Compiles `schema/` with protox (pure Rust, no `protoc` needed) and generates prost types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=schema");
    let fds = protox::compile(
        [
            "meshmq/tables.proto",
            "meshmq/raft.proto",
            "meshmq/core.proto",
            "meshmq/peer.proto",
        ],
        ["schema"],
    )?;
    let mut config = prost_build::Config::new();
    // Payloads are shared with every matching subscriber: `Bytes` clones are O(1).
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
