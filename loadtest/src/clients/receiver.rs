//! The receiving loop of `conn` and `sub` clients: reads what the broker sends, counts and
//! times marked PUBLISHes (sequence checks per publisher stream, publish-to-receive
//! latency), acknowledges QoS 1 (PUBACK) and QoS 2 (PUBREC, then PUBCOMP on PUBREL), pings
//! at the keep-alive period, and reports a DISCONNECT.
//!
//! Parsing is in place, one pass per read; counters and the latency histogram are updated
//! once per read. Without a run duration, a subscriber that receives nothing for the run's
//! timeout stops (so a `sub -L N` run always ends).

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;

use super::{Outcome, frame_at, on_disconnect, ping_timer, tick, wall_ns, write_timed};
use crate::counters::Stop;
use crate::failure::{Closed, Timeout};
use crate::figures::SubscriberFigures;
use crate::live::{Live, add};
use crate::plan::Plan;
use crate::seqcheck::SeqTracker;
use crate::session::Session;
use crate::wire::{self, MqttVersion, kind};

/// What the idle timeout of a subscriber without `--duration` waited for.
pub const IDLE: &str = "a message (no --duration)";

/// Free space kept in the read buffer before each read.
const READ_CHUNK: usize = 16 * 1024;

/// What a receiving client keeps across reconnects.
#[derive(Debug, Default)]
pub struct ReceiveState {
    tracker: SeqTracker,
    received: u64,
    unmarked: u64,
    limit: Option<u64>,
    latencies: Vec<u64>,
    acks: Vec<u8>,
}

/// What one pass over the buffer found that ends the loop.
enum Found {
    Nothing,
    Disconnect(Vec<u8>),
}

impl ReceiveState {
    /// A fresh state; `limit` = stop after that many messages.
    pub fn new(limit: Option<u64>) -> ReceiveState {
        ReceiveState {
            limit,
            ..ReceiveState::default()
        }
    }

    fn limit_reached(&self) -> bool {
        self.limit.is_some_and(|l| self.received >= l)
    }

    /// This subscriber's row of the report.
    pub fn row(&self, index: usize) -> SubscriberFigures {
        let c = self.tracker.counts();
        SubscriberFigures {
            client: index as u64,
            received: self.received,
            lost: c.lost,
            duplicated: c.duplicated,
            out_of_order: c.out_of_order,
        }
    }

    /// Consumes the whole packets in `buf` (stopping at the message limit); returns the
    /// PUBLISH count and whether a DISCONNECT came.
    fn drain(&mut self, version: MqttVersion, buf: &mut BytesMut) -> anyhow::Result<(u64, Found)> {
        let now = wall_ns();
        let mut pos = 0;
        let mut publishes = 0;
        let mut found = Found::Nothing;
        while !self.limit_reached() {
            let Some(header) = frame_at(buf, pos)? else {
                break;
            };
            let body = &buf[pos + header.header_len..pos + header.frame_len()];
            match header.kind() {
                kind::PUBLISH => {
                    let p = wire::parse_publish(version, header.first, body)?;
                    match p.qos {
                        1 => self.acks.extend_from_slice(&wire::puback(p.packet_id)),
                        2 => self.acks.extend_from_slice(&wire::pubrec(p.packet_id)),
                        _ => {}
                    }
                    publishes += 1;
                    self.received += 1;
                    match wire::read_mark(p.payload) {
                        Some(m) => {
                            self.tracker.record(m.run, m.publisher, m.seq);
                            self.latencies.push(now.saturating_sub(m.sent_ns) / 1000);
                        }
                        None => self.unmarked += 1,
                    }
                }
                kind::PUBREL => {
                    if let Some((id, _)) = wire::ack_packet_id(body) {
                        self.acks.extend_from_slice(&wire::pubcomp(id));
                    }
                }
                kind::DISCONNECT => {
                    found = Found::Disconnect(body.to_vec());
                    pos += header.frame_len();
                    break;
                }
                _ => {}
            }
            pos += header.frame_len();
        }
        buf.advance(pos);
        Ok((publishes, found))
    }
}

/// Receives until the run stops, the limit is reached, or the connection ends.
pub async fn receive(
    session: &mut Session,
    state: &mut ReceiveState,
    plan: &Plan,
    live: &Live,
    stop: &Stop,
) -> Outcome {
    let opts = &plan.opts;
    let mut ping = ping_timer(opts.keep_alive);
    let idle = plan
        .duration
        .is_none()
        .then_some(opts.timeout)
        .filter(|_| state.limit.is_some());
    let stopped = stop.clone().wait();
    tokio::pin!(stopped);
    loop {
        let before = state.unmarked;
        let (n, found) = match state.drain(session.version, &mut session.buf) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e),
        };
        add(&live.received, n);
        add(&live.unmarked, state.unmarked - before);
        live.e2e(&state.latencies);
        state.latencies.clear();
        if let Found::Disconnect(body) = found {
            // The broker is gone from this connection: acks for it are moot.
            state.acks.clear();
            return on_disconnect(session, opts, &body);
        }
        if !state.acks.is_empty() {
            let acks = std::mem::take(&mut state.acks);
            if let Err(e) = write_timed(session, &acks, opts.timeout).await {
                return Outcome::Failed(e);
            }
        }
        if state.limit_reached() {
            return Outcome::Done;
        }
        session.buf.reserve(READ_CHUNK);
        let idle_sleep = tokio::time::sleep(idle.unwrap_or_default());
        tokio::select! {
            biased;
            _ = &mut stopped => return Outcome::Stopped,
            read = session.stream.read_buf(&mut session.buf) => match read {
                Ok(0) => return Outcome::Failed(Closed.into()),
                Ok(_) => {}
                Err(e) => return Outcome::Failed(e.into()),
            },
            _ = tick(&mut ping) => {
                if let Err(e) = write_timed(session, &wire::PINGREQ, opts.timeout).await {
                    return Outcome::Failed(e);
                }
            }
            _ = idle_sleep, if idle.is_some() => {
                return Outcome::Failed(Timeout(IDLE).into());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::wire::{Mark, PublishTemplate};

    fn frames(qos: u8, seqs: &[u64]) -> BytesMut {
        let mut t = PublishTemplate::new(MqttVersion::V5, "t", qos, 40).unwrap();
        let mut out = Vec::new();
        for &seq in seqs {
            let mark = Mark {
                sent_ns: wall_ns(),
                seq,
                run: 1,
                publisher: 0,
            };
            t.append(&mut out, &mark, seq as u16 + 1);
        }
        BytesMut::from(&out[..])
    }

    #[test]
    fn drain_counts_acks_and_checks_sequences() {
        let mut state = ReceiveState::new(None);
        let mut buf = frames(2, &[0, 1, 1, 3]);
        buf.extend_from_slice(&[0x62, 2, 0, 9]);
        let (n, found) = state.drain(MqttVersion::V5, &mut buf).unwrap();
        assert_eq!(n, 4);
        assert!(matches!(found, Found::Nothing));
        assert!(buf.is_empty());
        assert_eq!(state.acks.len(), 5 * 4);
        assert_eq!(&state.acks[16..], &wire::pubcomp(9));
        let row = state.row(3);
        assert_eq!((row.client, row.received), (3, 4));
        assert_eq!((row.lost, row.duplicated, row.out_of_order), (1, 1, 0));
        assert_eq!(state.latencies.len(), 4);
    }

    #[test]
    fn drain_stops_at_the_limit_and_at_disconnect() {
        let mut state = ReceiveState::new(Some(2));
        let mut buf = frames(0, &[0, 1, 2]);
        let (n, _) = state.drain(MqttVersion::V5, &mut buf).unwrap();
        assert_eq!(n, 2);
        assert!(state.limit_reached());
        assert!(!buf.is_empty(), "the third message stays unread");
        let mut state = ReceiveState::new(None);
        let mut buf = BytesMut::from(&[0xe0, 1, 0x9c, 0x30][..]);
        let (_, found) = state.drain(MqttVersion::V5, &mut buf).unwrap();
        assert!(matches!(found, Found::Disconnect(ref b) if b == &[0x9c]));
    }
}
