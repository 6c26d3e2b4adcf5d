//! `core-node`: a member of the Raft core group. Cluster mode is not built yet: today the
//! tables run embedded inside a standalone `replicant-node` (see the README).

fn main() {
    eprintln!(
        "core-node {}: the Raft core group is not available yet; run `cargo run --release -p replicant-node` \
         for a standalone broker with an embedded core",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
