//! Everything openraft: the type configuration, conversions between openraft types and our
//! protobuf messages, the redb stores and the QUIC network. Nothing outside this module names
//! an openraft type.

pub mod types;
