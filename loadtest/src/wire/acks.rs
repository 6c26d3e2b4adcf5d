//! The small fixed packets of the QoS 1/2 flows and keep-alive: PUBREC, PUBREL, PUBCOMP,
//! PINGREQ, and the packet id (plus MQTT 5 reason code) at the front of any ack.
//!
//! Pure; never panics on a short ack.

/// PINGREQ.
pub const PINGREQ: [u8; 2] = [0xc0, 0x00];

fn ack(first: u8, packet_id: u16) -> [u8; 4] {
    let [hi, lo] = packet_id.to_be_bytes();
    [first, 0x02, hi, lo]
}

/// PUBREC (success) for a QoS 2 PUBLISH received.
pub fn pubrec(packet_id: u16) -> [u8; 4] {
    ack(0x50, packet_id)
}

/// PUBREL (success) answering a PUBREC.
pub fn pubrel(packet_id: u16) -> [u8; 4] {
    ack(0x62, packet_id)
}

/// PUBCOMP (success) answering a PUBREL.
pub fn pubcomp(packet_id: u16) -> [u8; 4] {
    ack(0x70, packet_id)
}

/// The packet id of a PUBACK/PUBREC/PUBREL/PUBCOMP body and its reason code (0 when the
/// 2-byte form is used); `None` if the body is shorter than a packet id.
pub fn ack_packet_id(body: &[u8]) -> Option<(u16, u8)> {
    match body {
        [hi, lo] => Some((u16::from_be_bytes([*hi, *lo]), 0)),
        [hi, lo, code, ..] => Some((u16::from_be_bytes([*hi, *lo]), *code)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_bytes_and_ids() {
        assert_eq!(pubrel(0x0102), [0x62, 2, 1, 2]);
        assert_eq!(pubrec(7)[0], 0x50);
        assert_eq!(pubcomp(7)[0], 0x70);
        assert_eq!(ack_packet_id(&[0, 9]), Some((9, 0)));
        assert_eq!(ack_packet_id(&[0, 9, 0x87, 0]), Some((9, 0x87)));
        assert_eq!(ack_packet_id(&[0]), None);
    }
}
