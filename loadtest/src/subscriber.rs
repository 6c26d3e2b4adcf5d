//! One benchmark subscriber: reads whatever the broker sends, counts PUBLISH packets,
//! acknowledges QoS 1 ones by packet id, and keeps a latency sample for every 64th message
//! of each publisher while the measurement window is open.
//!
//! It owns its socket and its samples. Parsing reads the fixed header and the few PUBLISH
//! fields it needs in place (no allocation per message); it must never panic on what the
//! broker sends, and it never decides when measurement starts.

use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::MqttConn;
use crate::counters::{RunCounters, Stop};
use crate::wire::{self, MqttVersion, kind};

/// Keep a latency sample when `seq & SAMPLE_MASK == 0`: one message in 64.
pub const SAMPLE_MASK: u64 = 63;

/// Samples kept per subscriber at most (8 MiB), so a long run cannot eat the box.
const MAX_SAMPLES: usize = 1 << 20;

/// Free space kept in the read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;

/// Largest packet a subscriber accepts.
const MAX_PACKET: usize = 16 * 1024 * 1024;

/// What a subscriber hands back when it stops.
#[derive(Debug, Default)]
pub struct SubscriberOutcome {
    /// Publish-to-receive latencies in nanoseconds, sampled inside the window.
    pub latency_ns: Vec<u64>,
}

/// The parsing state of one subscriber, apart from its socket.
#[derive(Debug)]
struct Inbox {
    /// Protocol level of the connection.
    version: MqttVersion,
    /// PUBACKs to write after the current read has been parsed.
    acks: Vec<u8>,
    /// Samples kept so far.
    latency_ns: Vec<u64>,
}

impl Inbox {
    /// Consumes every whole packet in `buf`; returns how many were PUBLISHes.
    fn drain(&mut self, buf: &mut BytesMut, now_ns: u64, measuring: bool) -> anyhow::Result<u64> {
        let mut published = 0;
        let mut pos = 0;
        while let Some(header) = wire::parse_header(&buf[pos..])? {
            if header.body_len > MAX_PACKET {
                bail!("broker sent a {} byte packet", header.body_len);
            }
            if buf.len() - pos < header.frame_len() {
                break;
            }
            let body = &buf[pos + header.header_len..pos + header.frame_len()];
            match header.kind() {
                kind::PUBLISH => {
                    let publish = wire::parse_publish(self.version, header.first, body)?;
                    published += 1;
                    if publish.qos == 1 {
                        self.acks
                            .extend_from_slice(&wire::puback(publish.packet_id));
                    }
                    if measuring && self.latency_ns.len() < MAX_SAMPLES {
                        if let Some((sent, seq)) = wire::read_stamp(publish.payload)
                            && seq & SAMPLE_MASK == 0
                        {
                            self.latency_ns.push(now_ns.saturating_sub(sent));
                        }
                    }
                }
                kind::DISCONNECT => bail!("broker sent DISCONNECT"),
                _ => {}
            }
            pos += header.frame_len();
        }
        buf.advance(pos);
        Ok(published)
    }
}

/// Runs subscriber number `index` until `stop` fires or its connection fails (counted).
pub async fn run_subscriber(
    conn: MqttConn,
    index: usize,
    counters: Arc<RunCounters>,
    stop: Stop,
) -> SubscriberOutcome {
    let mut inbox = Inbox {
        version: conn.version(),
        acks: Vec::new(),
        latency_ns: Vec::new(),
    };
    if let Err(err) = receive(conn, index, &counters, stop, &mut inbox).await {
        counters.record_error(&format!("subscriber {index}"), &err);
    }
    SubscriberOutcome {
        latency_ns: inbox.latency_ns,
    }
}

async fn receive(
    conn: MqttConn,
    index: usize,
    counters: &RunCounters,
    stop: Stop,
    inbox: &mut Inbox,
) -> anyhow::Result<()> {
    let (mut stream, mut buf) = conn.into_parts();
    let Some(delivered) = counters.delivered.get(index) else {
        bail!("no counter for subscriber {index}");
    };
    let stopped = stop.wait();
    tokio::pin!(stopped);
    loop {
        let published = inbox.drain(&mut buf, counters.now_ns(), counters.is_measuring())?;
        RunCounters::add(delivered, published);
        if !inbox.acks.is_empty() {
            tokio::select! {
                biased;
                _ = &mut stopped => return Ok(()),
                written = stream.write_all(&inbox.acks) => written.context("writing PUBACKs")?,
            }
            inbox.acks.clear();
        }
        buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            read = stream.read_buf(&mut buf) => {
                if read.context("reading deliveries")? == 0 {
                    bail!("connection closed by the broker");
                }
            }
        }
    }
    let goodbye = stream.write_all(&wire::DISCONNECT);
    let _ = tokio::time::timeout(crate::publisher::GOODBYE_TIMEOUT, goodbye).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PublishBatch;

    #[test]
    fn drain_counts_acks_and_samples_across_split_reads() {
        let mut batch = PublishBatch::new(MqttVersion::V5, "t/1", 1, 32, 65).unwrap();
        let mut id = 0u16;
        let bytes = batch
            .stamp(65, 1_000, 0, || {
                id += 1;
                id
            })
            .to_vec();
        let mut inbox = Inbox {
            version: MqttVersion::V5,
            acks: Vec::new(),
            latency_ns: Vec::new(),
        };
        let cut = bytes.len() - 5;
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(inbox.drain(&mut buf, 3_000, true).unwrap(), 64);
        buf.extend_from_slice(&bytes[cut..]);
        assert_eq!(inbox.drain(&mut buf, 3_000, true).unwrap(), 1);
        assert!(buf.is_empty());
        assert_eq!(inbox.acks.len(), 65 * 4);
        assert_eq!(&inbox.acks[..4], &wire::puback(1));
        assert_eq!(
            inbox.latency_ns,
            vec![2_000, 2_000],
            "seq 0 and seq 64 are sampled"
        );
    }

    #[test]
    fn drain_rejects_garbage_without_panicking() {
        let mut inbox = Inbox {
            version: MqttVersion::V311,
            acks: Vec::new(),
            latency_ns: Vec::new(),
        };
        let mut buf = BytesMut::from(&[0x30, 0x01, 0x00][..]);
        assert!(inbox.drain(&mut buf, 0, false).is_err());
        let mut buf = BytesMut::from(&[0xe0, 0x00][..]);
        assert!(inbox.drain(&mut buf, 0, false).is_err());
    }
}
