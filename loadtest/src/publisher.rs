//! One benchmark publisher: floods pre-encoded PUBLISH batches (QoS 0) or keeps a window of
//! at most `inflight` unacknowledged PUBLISHes (QoS 1), as fast as the broker takes them,
//! or, with a [`Pacer`] (`--rate`), only as many as its schedule says are due.
//!
//! It owns its socket and its packet-id bookkeeping. It must never buffer beyond one batch:
//! when the socket would block the publisher waits, so the broker sets the pace (or the
//! pacer, whichever is slower). It never decides when measurement starts; it only counts
//! what it writes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::MqttConn;
use crate::counters::{RunCounters, Stop};
use crate::pace::Pacer;
use crate::transport::BoxStream;
use crate::wire::{self, PublishBatch, kind};

/// Bytes of PUBLISH frames written per batch (one `write` when the socket has room).
const BATCH_BYTES: usize = 32 * 1024;

/// How long a clean stop may wait to write DISCONNECT to a full socket.
pub const GOODBYE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Largest packet a publisher accepts from the broker.
const MAX_INBOUND_PACKET: usize = 1024 * 1024;

/// What one publisher sends.
#[derive(Debug, Clone)]
pub struct PublisherSpec {
    /// Topic name, with `%i` already replaced.
    pub topic: String,
    /// 0 or 1.
    pub qos: u8,
    /// Payload bytes (at least [`wire::STAMP_LEN`]).
    pub size: usize,
    /// QoS 1 window: unacknowledged PUBLISHes allowed at once.
    pub inflight: usize,
    /// The schedule to send on; `None` sends as fast as the broker takes it.
    pub pacer: Option<Pacer>,
}

/// How many frames may go now: all `room` without a pacer, else what the pacer says is due.
fn allowance(pacer: Option<&Pacer>, room: usize) -> usize {
    match pacer {
        None => room,
        Some(p) => usize::try_from(p.due(Instant::now()))
            .unwrap_or(usize::MAX)
            .min(room),
    }
}

/// Sleeps until the pacer's next message is due; never resolves without a pacer.
async fn next_due(pacer: Option<&Pacer>) {
    match pacer {
        Some(p) => tokio::time::sleep_until(p.next_at().into()).await,
        None => std::future::pending().await,
    }
}

/// Runs a publisher until `stop` fires or its connection fails (counted as an error).
pub async fn run_publisher(
    conn: MqttConn,
    spec: PublisherSpec,
    counters: Arc<RunCounters>,
    stop: Stop,
    name: String,
) {
    let result = if spec.qos == 0 {
        flood_qos0(conn, &spec, &counters, stop).await
    } else {
        window_qos1(conn, &spec, &counters, stop).await
    };
    if let Err(err) = result {
        counters.record_error(&name, &err);
    }
}

fn batch_for(
    conn: &MqttConn,
    spec: &PublisherSpec,
    max: usize,
    run: u64,
) -> anyhow::Result<PublishBatch> {
    let (v, topic, qos, size) = (conn.version(), &spec.topic, spec.qos, spec.size);
    let one = PublishBatch::new(v, topic, qos, size, 1, run)?;
    let capacity = (BATCH_BYTES / one.frame_len()).clamp(1, max.max(1));
    Ok(PublishBatch::new(v, topic, qos, size, capacity, run)?)
}

/// QoS 0: write whole batches back to back; writing parks while the socket is full.
async fn flood_qos0(
    conn: MqttConn,
    spec: &PublisherSpec,
    counters: &RunCounters,
    stop: Stop,
) -> anyhow::Result<()> {
    let mut batch = batch_for(&conn, spec, usize::MAX, counters.run_tag)?;
    let (mut stream, _) = conn.into_parts();
    let mut pacer = spec.pacer.clone();
    let mut seq = 0u64;
    let stopped = stop.clone().wait();
    tokio::pin!(stopped);
    while !stop.is_set() {
        let n = allowance(pacer.as_ref(), batch.capacity());
        if n == 0 {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                _ = next_due(pacer.as_ref()) => continue,
            }
        }
        let frame_len = batch.frame_len();
        let bytes = batch.stamp(n, counters.now_ns(), seq, || 0);
        let written = write_until(&mut stream, bytes, stopped.as_mut()).await?;
        RunCounters::add(&counters.published, (written / frame_len) as u64);
        if written < bytes.len() {
            return Ok(());
        }
        seq += n as u64;
        if let Some(p) = pacer.as_mut() {
            p.sent(n as u64);
        }
    }
    finish(&mut stream).await;
    Ok(())
}

/// Writes `bytes` until all are written or `stopped` resolves, then flushes (TLS and
/// WebSocket may hold the tail of a batch); returns the bytes written, so a stop in the
/// middle of a batch still counts exactly the frames that left. A stop during the flush
/// returns every byte as written: callers check `stop.is_set()` before polling `stopped`.
async fn write_until(
    stream: &mut BoxStream,
    bytes: &[u8],
    mut stopped: Pin<&mut impl Future<Output = ()>>,
) -> anyhow::Result<usize> {
    let mut off = 0;
    while off < bytes.len() {
        tokio::select! {
            biased;
            _ = &mut stopped => return Ok(off),
            n = stream.write(&bytes[off..]) => match n.context("writing PUBLISH batch")? {
                0 => bail!("connection closed while writing"),
                n => off += n,
            },
        }
    }
    tokio::select! {
        biased;
        _ = &mut stopped => {}
        flushed = stream.flush() => flushed.context("flushing PUBLISH batch")?,
    }
    Ok(off)
}

/// Which QoS 1 packet ids are waiting for their PUBACK.
struct Window {
    /// `outstanding[id]` is true while `id` is unacknowledged.
    outstanding: Vec<bool>,
    /// Unacknowledged PUBLISHes.
    inflight: usize,
    /// The next id to try; ids cycle through 1..=65535.
    next: u16,
}

impl Window {
    fn new() -> Window {
        Window {
            outstanding: vec![false; 65536],
            inflight: 0,
            next: 1,
        }
    }

    /// Takes a free id; the caller keeps `inflight` well under 65535, so one is free.
    fn take(&mut self) -> u16 {
        while self.outstanding[usize::from(self.next)] {
            self.next = self.next.checked_add(1).unwrap_or(1);
        }
        let id = self.next;
        self.outstanding[usize::from(id)] = true;
        self.inflight += 1;
        self.next = self.next.checked_add(1).unwrap_or(1);
        id
    }

    /// Releases `id`; false if it was not outstanding (a broker bug worth reporting).
    fn release(&mut self, id: u16) -> bool {
        let slot = &mut self.outstanding[usize::from(id)];
        if !*slot {
            return false;
        }
        *slot = false;
        self.inflight -= 1;
        true
    }
}

/// QoS 1: fill the window, then read PUBACKs and refill as they come.
async fn window_qos1(
    conn: MqttConn,
    spec: &PublisherSpec,
    counters: &RunCounters,
    stop: Stop,
) -> anyhow::Result<()> {
    let max_inflight = spec.inflight.clamp(1, 65_000);
    let mut batch = batch_for(&conn, spec, max_inflight, counters.run_tag)?;
    let (mut stream, mut buf) = conn.into_parts();
    let mut window = Window::new();
    let mut pacer = spec.pacer.clone();
    let mut seq = 0u64;
    let stopped = stop.clone().wait();
    tokio::pin!(stopped);
    while !stop.is_set() {
        let free = max_inflight - window.inflight;
        let n = allowance(pacer.as_ref(), free.min(batch.capacity()));
        if n > 0 {
            let frame_len = batch.frame_len();
            let bytes = batch.stamp(n, counters.now_ns(), seq, || window.take());
            let written = write_until(&mut stream, bytes, stopped.as_mut()).await?;
            RunCounters::add(&counters.published, (written / frame_len) as u64);
            if written < bytes.len() {
                return Ok(());
            }
            seq += n as u64;
            if let Some(p) = pacer.as_mut() {
                p.sent(n as u64);
            }
            if stop.is_set() {
                // The stop came during the flush: `stopped` has resolved, never poll it again.
                break;
            }
        }
        // Wake for the next scheduled message only while the window has room for it.
        let timer = pacer.is_some() && window.inflight < max_inflight;
        buf.reserve(16 * 1024);
        tokio::select! {
            biased;
            _ = &mut stopped => return Ok(()),
            read = stream.read_buf(&mut buf) => {
                if read.context("reading PUBACKs")? == 0 {
                    bail!("connection closed by the broker");
                }
            }
            _ = next_due(pacer.as_ref()), if timer => continue,
        }
        let acked = take_acks(&mut buf, &mut window)?;
        RunCounters::add(&counters.acked, acked);
    }
    finish(&mut stream).await;
    Ok(())
}

/// Consumes every whole packet in `buf`; returns how many PUBACKs released an id.
fn take_acks(buf: &mut BytesMut, window: &mut Window) -> anyhow::Result<u64> {
    let mut acked = 0;
    while let Some(header) = wire::parse_header(buf)? {
        if header.body_len > MAX_INBOUND_PACKET {
            bail!("broker sent a {} byte packet", header.body_len);
        }
        if buf.len() < header.frame_len() {
            break;
        }
        let body = &buf[header.header_len..header.frame_len()];
        match header.kind() {
            kind::PUBACK => {
                let id = match body {
                    [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]),
                    _ => bail!("PUBACK without packet id"),
                };
                if !window.release(id) {
                    bail!("PUBACK for packet id {id} that is not in flight");
                }
                acked += 1;
            }
            kind::DISCONNECT => bail!("broker sent DISCONNECT"),
            _ => {}
        }
        buf.advance(header.frame_len());
    }
    Ok(acked)
}

/// Says goodbye after a clean stop (never after a write cut short, which would corrupt it).
async fn finish(stream: &mut BoxStream) {
    let goodbye = async {
        stream.write_all(&wire::DISCONNECT).await?;
        stream.flush().await
    };
    let _ = tokio::time::timeout(GOODBYE_TIMEOUT, goodbye).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn window_ids_skip_zero_and_outstanding_ids() {
        let mut w = Window {
            outstanding: vec![false; 65536],
            inflight: 0,
            next: 65535,
        };
        assert_eq!(w.take(), 65535);
        assert_eq!(w.take(), 1);
        assert!(w.release(65535));
        assert!(!w.release(65535));
        assert_eq!(w.inflight, 1);
    }

    #[test]
    fn acks_are_counted_and_unknown_ids_rejected() {
        let mut w = Window::new();
        let a = w.take();
        let b = w.take();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&wire::puback(b));
        buf.extend_from_slice(&wire::puback(a));
        buf.extend_from_slice(&[0x40, 0x02, 0x00]);
        assert_eq!(take_acks(&mut buf, &mut w).unwrap(), 2);
        assert_eq!(buf.len(), 3, "partial PUBACK stays buffered");
        buf.extend_from_slice(&[0x09]);
        assert!(take_acks(&mut buf, &mut w).is_err());
    }
}
