//! The clients of `loadtest retained-replay` (see [`crate::retained_replay`]): the loaders
//! that store the retained messages, the paced publishers, the subscriber that times their
//! messages, the subscriber whose SUBSCRIBE starts the replay, and the broker RSS sampler.
//!
//! Each owns its socket and hands back what it measured. Every network wait has a deadline;
//! what the broker sends is parsed with the bounds-checked `wire` helpers and never makes
//! a client panic.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::MqttConn;
use crate::counters::Stop;
use crate::transport::BoxStream;
use crate::wire::{self, Mark, MqttVersion, PublishTemplate, kind};

/// Unacknowledged retained PUBLISHes per loader.
const LOAD_WINDOW: usize = 256;
/// Largest packet a client accepts.
const MAX_PACKET: usize = 16 * 1024 * 1024;
/// Free space kept in a read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;
/// Unacknowledged PUBLISHes a paced publisher allows before it reports the broker stuck.
const MAX_UNACKED: usize = 30_000;

/// Wall-clock nanoseconds since the Unix epoch (marks are compared across connections).
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Reads once into `buf` within `timeout`; an error when the broker closed the connection.
async fn read_some(
    stream: &mut BoxStream,
    buf: &mut BytesMut,
    timeout: Duration,
) -> anyhow::Result<()> {
    buf.reserve(READ_CHUNK);
    let n = tokio::time::timeout(timeout, stream.read_buf(buf))
        .await
        .context("read timed out")??;
    ensure!(n > 0, "connection closed by the broker");
    Ok(())
}

/// Calls `f(header, body)` for every whole packet at the front of `buf`, then drops them.
fn each_packet(
    buf: &mut BytesMut,
    mut f: impl FnMut(wire::FrameHeader, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut pos = 0;
    while let Some(header) = wire::parse_header(&buf[pos..])? {
        ensure!(
            header.body_len <= MAX_PACKET,
            "a {} byte packet",
            header.body_len
        );
        if buf.len() - pos < header.frame_len() {
            break;
        }
        let body = &buf[pos + header.header_len..pos + header.frame_len()];
        if header.kind() == kind::DISCONNECT {
            bail!("broker sent DISCONNECT");
        }
        f(header, body)?;
        pos += header.frame_len();
    }
    buf.advance(pos);
    Ok(())
}

/// The topic of a PUBLISH body.
fn publish_topic(body: &[u8]) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    body.get(2..2 + len)
}

/// Stores the retained messages `{prefix}{i}` for `i` in `indices` (QoS 1, `size`-byte
/// payloads, RETAIN=1) over one connection, pipelined, and waits for every PUBACK.
pub async fn load(
    addr: SocketAddr,
    version: MqttVersion,
    client_id: &str,
    prefix: &str,
    indices: impl Iterator<Item = usize>,
    size: usize,
    timeout: Duration,
) -> anyhow::Result<u64> {
    let conn = MqttConn::connect_tcp(addr, version, client_id, timeout).await?;
    let (mut stream, mut buf) = conn.into_parts();
    let mut indices = indices.peekable();
    let (mut unacked, mut stored, mut pid) = (0usize, 0u64, 0u16);
    let mut out = Vec::new();
    let mark = Mark {
        sent_ns: 0,
        seq: 0,
        run: 0,
        publisher: 0,
    };
    loop {
        out.clear();
        while unacked < LOAD_WINDOW {
            let Some(i) = indices.next() else { break };
            let mut t = PublishTemplate::new(version, &format!("{prefix}{i}"), 1, size)?;
            t.set_retain();
            pid = pid.checked_add(1).unwrap_or(1);
            t.append(&mut out, &mark, pid);
            unacked += 1;
        }
        if !out.is_empty() {
            tokio::time::timeout(timeout, stream.write_all(&out))
                .await
                .context("write timed out")??;
        }
        if unacked == 0 && indices.peek().is_none() {
            return Ok(stored);
        }
        read_some(&mut stream, &mut buf, timeout).await?;
        each_packet(&mut buf, |header, _| {
            if header.kind() == kind::PUBACK {
                unacked = unacked.saturating_sub(1);
                stored += 1;
            }
            Ok(())
        })?;
    }
}

/// What a paced publisher measured: per PUBACK, (send time in wall ns, round trip in ns).
#[derive(Debug, Default)]
pub struct Published {
    /// PUBLISHes written.
    pub sent: u64,
    /// (sent_ns, PUBACK round trip ns) of every acknowledged QoS 1 PUBLISH.
    pub acks: Vec<(u64, u64)>,
}

/// How a paced publisher publishes.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Topic.
    pub topic: String,
    /// QoS 0 or 1.
    pub qos: u8,
    /// Payload bytes (at least the mark's 32).
    pub size: usize,
    /// Time between two PUBLISHes.
    pub period: Duration,
    /// Publisher index, carried in the mark.
    pub index: u32,
    /// Run tag, carried in the mark.
    pub run: u64,
    /// Deadline of a write.
    pub timeout: Duration,
    /// Publish retained messages (each one a table write on the broker).
    pub retain: bool,
}

/// Publishes marked messages as `pace` says until `stop`; with QoS 1 times each PUBACK.
pub async fn publish_paced(conn: MqttConn, pace: Pace, stop: Stop) -> anyhow::Result<Published> {
    let version = conn.version();
    let (mut stream, mut buf) = conn.into_parts();
    let Pace {
        topic,
        qos,
        size,
        period,
        index,
        run,
        timeout,
        retain,
    } = pace;
    let mut template = PublishTemplate::new(version, &topic, qos, size)?;
    if retain {
        template.set_retain();
    }
    let mut sent_at: Vec<Option<(Instant, u64)>> = vec![None; usize::from(u16::MAX) + 1];
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut pid, mut unacked) = (0u16, 0usize);
    let mut done = Published::default();
    let stopped = stop.wait();
    tokio::pin!(stopped);
    loop {
        buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            _ = &mut stopped => return Ok(done),
            r = stream.read_buf(&mut buf) => {
                ensure!(r.context("reading")? > 0, "connection closed by the broker");
                let now = Instant::now();
                each_packet(&mut buf, |header, body| {
                    if header.kind() == kind::PUBACK
                        && let Some((id, _)) = wire::ack_packet_id(body)
                        && let Some((at, sent_ns)) = sent_at[usize::from(id)].take()
                    {
                        unacked -= 1;
                        done.acks.push((sent_ns, now.duration_since(at).as_nanos() as u64));
                    }
                    Ok(())
                })?;
            }
            _ = tick.tick() => {
                ensure!(unacked < MAX_UNACKED, "{unacked} PUBLISHes unacknowledged");
                let sent_ns = wall_ns();
                if qos > 0 {
                    pid = pid.checked_add(1).unwrap_or(1);
                    if sent_at[usize::from(pid)].replace((Instant::now(), sent_ns)).is_none() {
                        unacked += 1;
                    }
                }
                let mark = Mark { sent_ns, seq: done.sent, run, publisher: index };
                out.clear();
                template.append(&mut out, &mark, pid);
                tokio::time::timeout(timeout, stream.write_all(&out))
                    .await
                    .context("write timed out")??;
                done.sent += 1;
            }
        }
    }
}

/// Receives marked messages of run `run` until `stop`, acking QoS 1; returns (send time in
/// wall ns, publish → receive latency in ns) of each.
pub async fn time_deliveries(
    conn: MqttConn,
    run: u64,
    stop: Stop,
) -> anyhow::Result<Vec<(u64, u64)>> {
    let version = conn.version();
    let (mut stream, mut buf) = conn.into_parts();
    let mut seen = Vec::new();
    let mut acks = Vec::new();
    let stopped = stop.wait();
    tokio::pin!(stopped);
    loop {
        buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            _ = &mut stopped => return Ok(seen),
            r = stream.read_buf(&mut buf) => {
                ensure!(r.context("reading")? > 0, "connection closed by the broker");
                let now = wall_ns();
                acks.clear();
                each_packet(&mut buf, |header, body| {
                    if header.kind() == kind::PUBLISH {
                        let p = wire::parse_publish(version, header.first, body)?;
                        if p.qos == 1 {
                            acks.extend_from_slice(&wire::puback(p.packet_id));
                        }
                        if let Some(mark) = wire::read_mark(p.payload).filter(|m| m.run == run) {
                            seen.push((mark.sent_ns, now.saturating_sub(mark.sent_ns)));
                        }
                    }
                    Ok(())
                })?;
                if !acks.is_empty() {
                    stream.write_all(&acks).await.context("writing PUBACKs")?;
                }
            }
        }
    }
}

/// What the replaying subscriber saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Replayed {
    /// Wall ns when the SUBSCRIBE was written.
    pub subscribed_ns: u64,
    /// Wall ns of the last retained delivery (of the SUBSCRIBE when there was none).
    pub last_ns: u64,
    /// SUBSCRIBE → SUBACK.
    pub suback_after: Option<Duration>,
    /// SUBSCRIBE → first retained delivery.
    pub first_after: Option<Duration>,
    /// Retained deliveries of the loaded topics, duplicates included.
    pub received: u64,
    /// Distinct loaded topics among them.
    pub distinct: u64,
}

/// Subscribes to `filter` at `qos` (0 or 1) and counts the retained deliveries of the
/// topics `{prefix}{i}`, `i < n`, acking QoS 1 (live messages too), until all `n` arrived,
/// no retained one came for `idle`, or `max` passed.
#[allow(clippy::too_many_arguments)] // one call site, each argument named there
pub async fn replay(
    addr: SocketAddr,
    version: MqttVersion,
    filter: &str,
    qos: u8,
    prefix: &str,
    n: usize,
    idle: Duration,
    max: Duration,
) -> anyhow::Result<Replayed> {
    let conn = MqttConn::connect_tcp(addr, version, "loadtest_replay_sub", idle).await?;
    let (mut stream, mut buf) = conn.into_parts();
    let mut seen = vec![false; n];
    let mut r = Replayed::default();
    let subscribe = wire::encode_subscribe(version, 1, filter, qos)?;
    let start = Instant::now();
    r.subscribed_ns = wall_ns();
    r.last_ns = r.subscribed_ns;
    stream
        .write_all(&subscribe)
        .await
        .context("sending SUBSCRIBE")?;
    let mut acks = Vec::new();
    // Of the SUBSCRIBE, then of the latest retained delivery: live messages that match the
    // filter too do not keep a stalled replay going.
    let mut last = Instant::now();
    while (r.distinct as usize) < n && start.elapsed() < max {
        let left = idle.saturating_sub(last.elapsed());
        let read = if left.is_zero() {
            Err(anyhow::anyhow!("no retained message for {idle:?}"))
        } else {
            read_some(&mut stream, &mut buf, left).await
        };
        if let Err(e) = read {
            if r.suback_after.is_none() {
                return Err(e.context("waiting for SUBACK"));
            }
            break; // idle: the replay is over, whatever it delivered
        }
        let now = start.elapsed();
        acks.clear();
        each_packet(&mut buf, |header, body| {
            match header.kind() {
                kind::SUBACK => {
                    wire::check_suback(version, &header, body, 1)?;
                    r.suback_after = Some(now);
                }
                kind::PUBLISH => {
                    let p = wire::parse_publish(version, header.first, body)?;
                    if p.qos == 1 {
                        acks.extend_from_slice(&wire::puback(p.packet_id));
                    }
                    let index = publish_topic(body)
                        .and_then(|t| t.strip_prefix(prefix.as_bytes()))
                        .and_then(|i| std::str::from_utf8(i).ok()?.parse::<usize>().ok());
                    if header.first & 1 == 1
                        && let Some(i) = index.filter(|i| *i < n)
                    {
                        r.received += 1;
                        last = Instant::now();
                        r.first_after.get_or_insert(now);
                        r.last_ns = wall_ns();
                        if !std::mem::replace(&mut seen[i], true) {
                            r.distinct += 1;
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        if !acks.is_empty() {
            stream.write_all(&acks).await.context("writing PUBACKs")?;
        }
    }
    Ok(r)
}

/// Samples the summed `VmRSS` of `pids` every `every` until `stop`: (wall ns, KiB).
pub async fn sample_rss(pids: Vec<u32>, every: Duration, stop: Stop) -> Vec<(u64, u64)> {
    let mut samples = Vec::new();
    if pids.is_empty() {
        return samples;
    }
    let mut tick = tokio::time::interval(every);
    let stopped = stop.wait();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => return samples,
            _ = tick.tick() => {
                if let Some(kib) = crate::rss::vmrss_sum_kib(&pids) {
                    samples.push((wall_ns(), kib));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn topics_and_packets_are_read_in_place() {
        let mut t = PublishTemplate::new(MqttVersion::V311, "retained/42", 1, 40).unwrap();
        t.set_retain();
        let mut out = Vec::new();
        let mark = Mark {
            sent_ns: 1,
            seq: 2,
            run: 3,
            publisher: 4,
        };
        t.append(&mut out, &mark, 7);
        out.extend_from_slice(&wire::puback(9));
        out.push(0x30); // a partial packet stays in the buffer
        let mut buf = BytesMut::from(&out[..]);
        let mut seen = Vec::new();
        each_packet(&mut buf, |h, body| {
            seen.push((
                h.kind(),
                h.first & 1,
                publish_topic(body).map(<[u8]>::to_vec),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen[0], (kind::PUBLISH, 1, Some(b"retained/42".to_vec())));
        assert_eq!(seen[1].0, kind::PUBACK);
        assert_eq!(&buf[..], &[0x30]);
        assert_eq!(
            publish_topic(&[0, 5, b'a']),
            None,
            "a short body is no topic"
        );
    }

    #[test]
    fn a_disconnect_ends_the_read() {
        let mut buf = BytesMut::from(&wire::DISCONNECT[..]);
        assert!(each_packet(&mut buf, |_, _| Ok(())).is_err());
    }
}
