//! Everything openraft: the type configuration, conversions between openraft types and our
//! protobuf messages, the redb stores and the QUIC network. Nothing outside this module names
//! an openraft type.

pub mod append_budget;
pub mod convert;
pub mod network;
pub mod network_error;
pub mod rpc_convert;
pub mod rpc_server;
pub mod store;
pub mod types;
