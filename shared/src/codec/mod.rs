//! The MQTT 3.1 / 3.1.1 / 5.0 codec: packet model, decoder with limits, encoder.
//!
//! Pure and synchronous: bytes in, packets out. The protocol version is detected from the
//! CONNECT before anything else is parsed, and every later packet is read with it.

mod packet;
mod properties;
mod reason;

pub use packet::*;
pub use properties::{Properties, id as property_id};
pub use reason::ReasonCode;
