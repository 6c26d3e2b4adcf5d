//! The publishing loop of `pub` clients: marked PUBLISHes (send time, sequence number, run
//! tag, publisher index) every `-I` ms, or back to back with `-I 0`, until `-L` messages or
//! the end of the run; at QoS 1/2 at most `-F` unacknowledged at once (PUBACK, or
//! PUBREC → PUBREL → PUBCOMP).
//!
//! The frame is encoded once per client and re-marked per message. Every wait is bounded:
//! a stalled write, and the wait for the last acks, end with a timeout.
//!
//! The unacknowledged messages outlive a connection: after a reconnect they are sent
//! again first (PUBLISH with DUP set, or PUBREL for QoS 2 past PUBREC), as MQTT requires of
//! a client resuming its session, so a broker that disconnects a publisher loses nothing.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Buf;
use tokio::io::AsyncReadExt;

use super::{Outcome, frame_at, on_disconnect, ping_timer, tick, wall_ns, write_timed};
use crate::counters::Stop;
use crate::failure::{Closed, Timeout};
use crate::live::{Live, add};
use crate::pace::Pacer;
use crate::plan::{Plan, PubSpec};
use crate::session::Session;
use crate::wire::{self, Mark, PublishTemplate, kind};

/// Bytes of PUBLISH frames written at once when flooding.
const BATCH_BYTES: usize = 32 * 1024;

/// Where a QoS > 0 PUBLISH is in its flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// QoS 2: PUBREL sent, waiting for PUBCOMP.
    Released,
}

/// One unacknowledged message: its stage and what its mark said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inflight {
    stage: Stage,
    seq: u64,
    sent_ns: u64,
}

impl Inflight {
    fn sent(seq: u64, sent_ns: u64) -> Inflight {
        Inflight {
            stage: Stage::Sent,
            seq,
            sent_ns,
        }
    }
}

/// The DUP flag of a PUBLISH's first byte.
const DUP: u8 = 0x08;

/// What a publisher keeps across reconnects.
#[derive(Debug)]
pub struct PublishState {
    template: PublishTemplate,
    qos: u8,
    inflight_max: usize,
    limit: Option<u64>,
    pacer: Option<Pacer>,
    run: u64,
    publisher: u32,
    seq: u64,
    next_id: u16,
    out: Vec<u8>,
    /// Unacknowledged QoS 1/2 messages by packet id.
    window: HashMap<u16, Inflight>,
}

impl PublishState {
    /// The state of publisher `index` with client id `client_id`.
    pub fn new(
        plan: &Plan,
        spec: &PubSpec,
        index: usize,
        client_id: &str,
    ) -> anyhow::Result<PublishState> {
        let topic = Plan::topic_for(&spec.topic, index, client_id);
        let template = PublishTemplate::new(plan.opts.version, &topic, spec.qos, spec.size)?;
        let pacer = (!spec.interval.is_zero())
            .then(|| Pacer::new(Instant::now(), 1.0 / spec.interval.as_secs_f64()));
        Ok(PublishState {
            template,
            qos: spec.qos,
            inflight_max: spec.inflight.clamp(1, 65_000),
            limit: spec.limit,
            pacer,
            run: plan.run_tag,
            publisher: u32::try_from(index).unwrap_or(u32::MAX),
            seq: 0,
            next_id: 1,
            out: Vec::with_capacity(BATCH_BYTES),
            window: HashMap::new(),
        })
    }

    fn left(&self) -> u64 {
        self.limit.map_or(u64::MAX, |l| l.saturating_sub(self.seq))
    }

    fn take_id(&mut self) -> u16 {
        while self.next_id == 0 || self.window.contains_key(&self.next_id) {
            self.next_id = self.next_id.wrapping_add(1);
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// The frames that send the unacknowledged messages again, oldest first: PUBLISH with
    /// DUP, or PUBREL once PUBREC came.
    fn resend_frames(&mut self) -> Vec<u8> {
        let mut inflight: Vec<(u16, Inflight)> =
            self.window.iter().map(|(k, v)| (*k, *v)).collect();
        inflight.sort_by_key(|(_, m)| m.seq);
        let mut out = Vec::new();
        for (id, m) in inflight {
            match m.stage {
                Stage::Sent => {
                    let mark = Mark {
                        sent_ns: m.sent_ns,
                        seq: m.seq,
                        run: self.run,
                        publisher: self.publisher,
                    };
                    let at = out.len();
                    self.template.append(&mut out, &mark, id);
                    out[at] |= DUP;
                }
                Stage::Released => out.extend_from_slice(&wire::pubrel(id)),
            }
        }
        out
    }
}

/// Publishes until the run stops, the limit is sent and acknowledged, or the connection
/// ends.
pub async fn publish(
    session: &mut Session,
    state: &mut PublishState,
    plan: &Plan,
    live: &Live,
    stop: &Stop,
) -> Outcome {
    let opts = &plan.opts;
    let again = state.resend_frames();
    if !again.is_empty()
        && let Err(e) = write_timed(session, &again, opts.timeout).await
    {
        return Outcome::Failed(e);
    }
    let mut ping = ping_timer(opts.keep_alive);
    let mut acks_due: Option<Instant> = None;
    let per_batch = (BATCH_BYTES / state.template.frame_len()).max(1);
    let stopped = stop.clone().wait();
    tokio::pin!(stopped);
    loop {
        if stop.is_set() {
            return Outcome::Stopped;
        }
        let left = state.left();
        if left == 0 && state.window.is_empty() {
            return Outcome::Done;
        }
        let room = if state.qos == 0 {
            per_batch
        } else {
            state.inflight_max - state.window.len()
        };
        let due = state
            .pacer
            .as_ref()
            .map_or(u64::MAX, |p| p.due(Instant::now()));
        let n = (room.min(per_batch) as u64).min(left).min(due);
        if n > 0 {
            state.out.clear();
            for _ in 0..n {
                let sent_ns = wall_ns();
                let id = if state.qos > 0 {
                    let id = state.take_id();
                    state.window.insert(id, Inflight::sent(state.seq, sent_ns));
                    id
                } else {
                    0
                };
                let mark = Mark {
                    sent_ns,
                    seq: state.seq,
                    run: state.run,
                    publisher: state.publisher,
                };
                state.template.append(&mut state.out, &mark, id);
                state.seq += 1;
            }
            let out = std::mem::take(&mut state.out);
            let written = write_timed(session, &out, opts.timeout).await;
            state.out = out;
            if let Err(e) = written {
                return Outcome::Failed(e);
            }
            add(&live.published, n);
            if let Some(p) = state.pacer.as_mut() {
                p.sent(n);
            }
        }
        if state.left() == 0 {
            if state.window.is_empty() {
                continue;
            }
            if acks_due.is_none() {
                acks_due = Some(Instant::now() + opts.timeout);
            }
        }
        // Go on at once while more may be sent now; otherwise wait for acks, the schedule,
        // the ping timer or the stop.
        let more_now = state.left() > 0
            && (state.qos == 0 || state.window.len() < state.inflight_max)
            && state
                .pacer
                .as_ref()
                .is_none_or(|p| p.due(Instant::now()) > 0);
        let can_send =
            state.left() > 0 && (state.qos == 0 || state.window.len() < state.inflight_max);
        let next_at = state.pacer.as_ref().map(|p| p.next_at());
        session.buf.reserve(4096);
        tokio::select! {
            biased;
            _ = &mut stopped => return Outcome::Stopped,
            read = session.stream.read_buf(&mut session.buf) => match read {
                Ok(0) => return Outcome::Failed(Closed.into()),
                Ok(_) => {
                    let (acked, found) = match take_acks(&mut session.buf, &mut state.window) {
                        Ok(r) => r,
                        Err(e) => return Outcome::Failed(e),
                    };
                    add(&live.acked, acked);
                    if let Some(body) = found.disconnect {
                        return on_disconnect(session, opts, &body);
                    }
                    if !found.pubrels.is_empty()
                        && let Err(e) = write_timed(session, &found.pubrels, opts.timeout).await
                    {
                        return Outcome::Failed(e);
                    }
                }
                Err(e) => return Outcome::Failed(e.into()),
            },
            _ = std::future::ready(()), if more_now => {}
            _ = sleep_until(next_at), if can_send && next_at.is_some() => {}
            _ = tick(&mut ping) => {
                if let Err(e) = write_timed(session, &wire::PINGREQ, opts.timeout).await {
                    return Outcome::Failed(e);
                }
            }
            _ = sleep_until(acks_due), if acks_due.is_some() => {
                return Outcome::Failed(Timeout("the last acknowledgements").into());
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// What one pass over the read buffer found.
#[derive(Debug, Default)]
struct Acks {
    /// PUBRELs to write (QoS 2).
    pubrels: Vec<u8>,
    /// The body of a DISCONNECT, if one came.
    disconnect: Option<Vec<u8>>,
}

/// Consumes the acknowledgements in `buf`: PUBACK/PUBCOMP release an id (counted as
/// acked), PUBREC moves it to [`Stage::Released`] and queues its PUBREL; a failed PUBREC
/// (reason >= 0x80) releases it uncounted.
fn take_acks(
    buf: &mut bytes::BytesMut,
    window: &mut HashMap<u16, Inflight>,
) -> anyhow::Result<(u64, Acks)> {
    let mut pos = 0;
    let mut acked = 0;
    let mut found = Acks::default();
    while let Some(header) = frame_at(buf, pos)? {
        let body = &buf[pos + header.header_len..pos + header.frame_len()];
        pos += header.frame_len();
        match header.kind() {
            kind::PUBACK | kind::PUBCOMP => {
                if let Some((id, _)) = wire::ack_packet_id(body)
                    && window.remove(&id).is_some()
                {
                    acked += 1;
                }
            }
            kind::PUBREC => {
                if let Some((id, code)) = wire::ack_packet_id(body) {
                    if code >= 0x80 {
                        window.remove(&id);
                    } else if let Some(m) = window.get_mut(&id) {
                        m.stage = Stage::Released;
                        found.pubrels.extend_from_slice(&wire::pubrel(id));
                    }
                }
            }
            kind::DISCONNECT => {
                found.disconnect = Some(body.to_vec());
                break;
            }
            _ => {}
        }
    }
    buf.advance(pos);
    Ok((acked, found))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn acks_release_ids_and_qos2_goes_through_pubrel() {
        let sent = |seq| Inflight::sent(seq, 7);
        let mut window = HashMap::from([(1, sent(0)), (2, sent(1)), (3, sent(2))]);
        let mut buf = bytes::BytesMut::new();
        buf.extend_from_slice(&wire::puback(1));
        buf.extend_from_slice(&wire::pubrec(2));
        buf.extend_from_slice(&[0x50, 3, 0, 3, 0x80]);
        buf.extend_from_slice(&wire::puback(99));
        buf.extend_from_slice(&[0x40, 2, 0]);
        let (acked, found) = take_acks(&mut buf, &mut window).unwrap();
        assert_eq!(acked, 1);
        assert_eq!(found.pubrels, wire::pubrel(2));
        assert_eq!(window.get(&2).map(|m| m.stage), Some(Stage::Released));
        assert!(!window.contains_key(&3));
        assert_eq!(buf.len(), 3, "a partial ack stays buffered");
        buf.clear();
        buf.extend_from_slice(&wire::pubcomp(2));
        buf.extend_from_slice(&[0xe0, 0]);
        let (acked, found) = take_acks(&mut buf, &mut window).unwrap();
        assert_eq!(acked, 1);
        assert!(window.is_empty());
        assert_eq!(found.disconnect, Some(vec![]));
    }

    #[test]
    fn unacknowledged_messages_are_sent_again_with_dup_or_pubrel() {
        let released = Inflight {
            stage: Stage::Released,
            seq: 3,
            sent_ns: 9,
        };
        let mut state = PublishState {
            template: PublishTemplate::new(wire::MqttVersion::V5, "t", 1, 40).unwrap(),
            qos: 1,
            inflight_max: 10,
            limit: None,
            pacer: None,
            run: 3,
            publisher: 2,
            seq: 5,
            next_id: 1,
            out: Vec::new(),
            window: HashMap::from([(7, Inflight::sent(4, 9)), (6, released)]),
        };
        let out = state.resend_frames();
        let rel = wire::pubrel(6);
        assert_eq!(&out[..rel.len()], &rel[..], "the older one first");
        let header = frame_at(&out, rel.len()).unwrap().unwrap();
        assert_eq!(header.kind(), kind::PUBLISH);
        assert_ne!(header.first & DUP, 0, "DUP set");
        let start = rel.len() + header.header_len;
        let body = &out[start..rel.len() + header.frame_len()];
        let p = wire::parse_publish(wire::MqttVersion::V5, header.first, body).unwrap();
        assert_eq!(p.packet_id, 7);
        let m = wire::read_mark(p.payload).unwrap();
        assert_eq!((m.seq, m.run, m.publisher, m.sent_ns), (4, 3, 2, 9));
        assert_eq!(out.len(), rel.len() + header.frame_len());
        state.window.clear();
        assert!(state.resend_frames().is_empty());
    }
}
