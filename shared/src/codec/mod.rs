//! The MQTT 3.1 / 3.1.1 / 5.0 codec: packet model, decoder with limits, encoder.
//!
//! Pure and synchronous: bytes in, packets out. The protocol version is detected from the
//! CONNECT before anything else is parsed, and every later packet is read with it.

mod decode;
mod decode_connect;
mod encode;
mod error;
mod packet;
mod properties;
mod props_codec;
mod reason;
mod wire;

pub use decode::{Decoder, decode_packet};
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use properties::{Properties, id as property_id};
pub use reason::ReasonCode;
