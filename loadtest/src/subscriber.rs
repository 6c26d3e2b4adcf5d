//! One benchmark subscriber: reads whatever the broker sends, counts PUBLISH packets,
//! acknowledges QoS 1 ones by packet id, and keeps a latency sample for every 64th message
//! of each publisher (every Nth with `--sample-every N`) while the measurement window is
//! open.
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

/// Keep a latency sample when `seq & SAMPLE_MASK == 0`: one message in 64 (the default).
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
    /// This run's tag: deliveries stamped otherwise are foreign.
    run: u64,
    /// Keep a sample when `seq & sample_mask == 0` (sampling every 2^k-th message).
    sample_mask: u64,
}

/// PUBLISH packets found by one [`Inbox::drain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Counts {
    /// Stamped by this run.
    ours: u64,
    /// Not stamped by this run (an earlier run's leftovers, or someone else's traffic).
    foreign: u64,
}

impl Inbox {
    /// Consumes every whole packet in `buf`; returns how many were PUBLISHes.
    fn drain(
        &mut self,
        buf: &mut BytesMut,
        now_ns: u64,
        measuring: bool,
    ) -> anyhow::Result<Counts> {
        let mut counts = Counts::default();
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
                    if publish.qos == 1 {
                        self.acks
                            .extend_from_slice(&wire::puback(publish.packet_id));
                    }
                    match wire::read_stamp(publish.payload) {
                        Some(stamp) if stamp.run == self.run => {
                            counts.ours += 1;
                            if measuring
                                && stamp.seq & self.sample_mask == 0
                                && self.latency_ns.len() < MAX_SAMPLES
                            {
                                self.latency_ns.push(now_ns.saturating_sub(stamp.sent_ns));
                            }
                        }
                        _ => counts.foreign += 1,
                    }
                }
                kind::DISCONNECT => bail!("broker sent DISCONNECT"),
                _ => {}
            }
            pos += header.frame_len();
        }
        buf.advance(pos);
        Ok(counts)
    }
}

/// Runs subscriber number `index` until `stop` fires or its connection fails (counted).
/// It samples the latency of messages whose sequence number has `seq & sample_mask == 0`
/// ([`SAMPLE_MASK`] by default; 0 samples every message).
pub async fn run_subscriber(
    conn: MqttConn,
    index: usize,
    counters: Arc<RunCounters>,
    stop: Stop,
    sample_mask: u64,
) -> SubscriberOutcome {
    let mut inbox = Inbox {
        version: conn.version(),
        acks: Vec::new(),
        latency_ns: Vec::new(),
        run: counters.run_tag,
        sample_mask,
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
        let counts = inbox.drain(&mut buf, counters.now_ns(), counters.is_measuring())?;
        if counts.ours > 0 {
            RunCounters::add(delivered, counts.ours);
        }
        if counts.foreign > 0 {
            RunCounters::add(&counters.foreign, counts.foreign);
        }
        if !inbox.acks.is_empty() {
            tokio::select! {
                biased;
                _ = &mut stopped => return Ok(()),
                written = async {
                    stream.write_all(&inbox.acks).await?;
                    stream.flush().await
                } => written.context("writing PUBACKs")?,
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
    let goodbye = async {
        stream.write_all(&wire::DISCONNECT).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(crate::publisher::GOODBYE_TIMEOUT, goodbye).await;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::wire::PublishBatch;

    fn inbox(version: MqttVersion, run: u64) -> Inbox {
        Inbox {
            version,
            acks: Vec::new(),
            latency_ns: Vec::new(),
            run,
            sample_mask: SAMPLE_MASK,
        }
    }

    fn frames(run: u64, n: usize) -> Vec<u8> {
        let mut batch = PublishBatch::new(MqttVersion::V5, "t/1", 1, 32, n, run).unwrap();
        let mut id = 0u16;
        let mut next = || {
            id += 1;
            id
        };
        batch.stamp(n, 1_000, 0, &mut next).to_vec()
    }

    #[test]
    fn drain_counts_acks_and_samples_across_split_reads() {
        let bytes = frames(7, 65);
        let mut inbox = inbox(MqttVersion::V5, 7);
        let cut = bytes.len() - 5;
        let mut buf = BytesMut::from(&bytes[..cut]);
        let ours = |n| Counts {
            ours: n,
            foreign: 0,
        };
        assert_eq!(inbox.drain(&mut buf, 3_000, true).unwrap(), ours(64));
        buf.extend_from_slice(&bytes[cut..]);
        assert_eq!(inbox.drain(&mut buf, 3_000, true).unwrap(), ours(1));
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
    fn mask_zero_samples_every_message() {
        let mut inbox = Inbox {
            sample_mask: 0,
            ..inbox(MqttVersion::V5, 7)
        };
        let mut buf = BytesMut::from(&frames(7, 5)[..]);
        inbox.drain(&mut buf, 3_000, true).unwrap();
        assert_eq!(inbox.latency_ns, vec![2_000; 5]);
    }

    #[test]
    fn other_runs_are_foreign_but_still_acked() {
        let mut inbox = inbox(MqttVersion::V5, 7);
        let mut buf = BytesMut::from(&frames(8, 3)[..]);
        assert_eq!(
            inbox.drain(&mut buf, 3_000, true).unwrap(),
            Counts {
                ours: 0,
                foreign: 3
            }
        );
        assert_eq!(inbox.acks.len(), 3 * 4);
        assert!(inbox.latency_ns.is_empty());
    }

    #[test]
    fn drain_rejects_garbage_without_panicking() {
        let mut inbox = inbox(MqttVersion::V311, 0);
        let mut buf = BytesMut::from(&[0x30, 0x01, 0x00][..]);
        assert!(inbox.drain(&mut buf, 0, false).is_err());
        let mut buf = BytesMut::from(&[0xe0, 0x00][..]);
        assert!(inbox.drain(&mut buf, 0, false).is_err());
    }
}
