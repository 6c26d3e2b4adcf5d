//! The life of one `conn`/`sub`/`pub` client: connect (following redirects), subscribe if it
//! is a subscriber, run its role loop ([`receiver`] for `conn` and `sub`, [`publisher`] for
//! `pub`) until the run stops or its count is done, and go where a DISCONNECT with a Server
//! Reference sends it. Counts everything in the run's [`Live`].
//!
//! It owns its session. Every network wait is bounded by the run's timeout; a failure is
//! counted by reason and ends the client (no blind reconnect loop).

pub mod publisher;
pub mod receiver;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::AsyncWriteExt;

use crate::counters::Stop;
use crate::endpoint::Endpoint;
use crate::failure::{ServerDisconnect, Timeout, reason_of};
use crate::live::{Live, add};
use crate::plan::{Job, Plan};
use crate::redirect;
use crate::session::{self, Attempt, ClientOpts, Session, Target};
use crate::wire::{self, FrameHeader};

/// Largest packet a client accepts from the broker.
pub const MAX_PACKET: usize = 16 * 1024 * 1024;

/// How a role loop ended.
#[derive(Debug)]
pub enum Outcome {
    /// The run stopped.
    Stopped,
    /// The client's count is done.
    Done,
    /// The broker sent it elsewhere (DISCONNECT 0x9C/0x9D with a Server Reference).
    Moved(Vec<Endpoint>),
    /// The connection failed.
    Failed(anyhow::Error),
}

/// Nanoseconds since the Unix epoch (the payload mark's clock).
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The whole frame at the front of `buf[pos..]`, if complete; refuses oversized packets.
pub fn frame_at(buf: &[u8], pos: usize) -> anyhow::Result<Option<FrameHeader>> {
    let Some(header) = wire::parse_header(&buf[pos..])? else {
        return Ok(None);
    };
    if header.body_len > MAX_PACKET {
        anyhow::bail!("broker sent a {} byte packet", header.body_len);
    }
    Ok((buf.len() - pos >= header.frame_len()).then_some(header))
}

/// What a DISCONNECT from the broker means for the client.
pub fn on_disconnect(session: &Session, opts: &ClientOpts, body: &[u8]) -> Outcome {
    let d = match wire::parse_disconnect(session.version, body) {
        Ok(d) => d,
        Err(e) => return Outcome::Failed(e.into()),
    };
    if opts.follow_redirects
        && redirect::is_redirect(d.code)
        && let Some(reference) = &d.server_reference
    {
        return match redirect::parse_reference(reference, session.endpoint.port, opts.allow_remote)
        {
            Ok(list) => Outcome::Moved(list),
            Err(e) => Outcome::Failed(e.into()),
        };
    }
    Outcome::Failed(
        ServerDisconnect {
            code: d.code,
            reason: d.reason_string,
        }
        .into(),
    )
}

/// Writes and flushes `bytes` within `timeout`.
pub async fn write_timed(
    session: &mut Session,
    bytes: &[u8],
    timeout: Duration,
) -> anyhow::Result<()> {
    let fut = async {
        session.stream.write_all(bytes).await?;
        session.stream.flush().await
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| Timeout("a write to the broker"))?
        .context("writing")
}

/// A keep-alive ping timer (`None` when keep-alive is off).
pub fn ping_timer(keep_alive: u16) -> Option<tokio::time::Interval> {
    (keep_alive > 0).then(|| {
        let period = Duration::from_secs(u64::from(keep_alive));
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    })
}

/// Resolves when `timer` ticks; never without a timer.
pub async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Counts one connect attempt in `live`; returns the session if it succeeded.
pub fn count_attempt(live: &Live, who: &str, attempt: Attempt) -> Option<Session> {
    add(&live.attempts, 1);
    add(&live.redirects, u64::from(attempt.redirects));
    match attempt.result {
        Ok(session) => {
            live.connect_ok(u64::try_from(attempt.latency.as_micros()).unwrap_or(u64::MAX));
            Some(session)
        }
        Err(err) => {
            live.connect_failed(who, reason_of(&err), &err);
            None
        }
    }
}

enum RoleState {
    Receive(receiver::ReceiveState),
    Publish(publisher::PublishState),
}

/// Runs client `index` of `plan` until the run stops, its count is done, or it fails.
pub async fn run_client(
    index: usize,
    plan: Arc<Plan>,
    targets: Arc<Vec<Target>>,
    live: Arc<Live>,
    stop: Stop,
) {
    let client_id = plan.client_id(index);
    let first = targets[plan.endpoint_index(index)].clone();
    let mut next = vec![first];
    let mut ever_connected = false;
    let mut role = match &plan.job {
        Job::Pub(spec) => match publisher::PublishState::new(&plan, spec, index, &client_id) {
            Ok(state) => RoleState::Publish(state),
            Err(err) => {
                live.error(&client_id, reason_of(&err), &err);
                return;
            }
        },
        Job::Sub(spec) => RoleState::Receive(receiver::ReceiveState::new(spec.limit)),
        Job::Conn | Job::Storm(_) => RoleState::Receive(receiver::ReceiveState::new(None)),
    };
    loop {
        let attempt = tokio::select! {
            biased;
            _ = stop.clone().wait() => break,
            a = session::connect(next.clone(), &client_id, &plan.opts) => a,
        };
        let Some(mut session) = count_attempt(&live, &client_id, attempt) else {
            break;
        };
        if !ever_connected {
            ever_connected = true;
            add(&live.clients_connected, 1);
        }
        live.opened();
        if let Job::Sub(spec) = &plan.job {
            let filter = Plan::topic_for(&spec.topic, index, &client_id);
            if let Err(err) = session
                .subscribe(&filter, spec.qos, plan.opts.timeout)
                .await
            {
                live.closed();
                live.error(&client_id, reason_of(&err), &err);
                break;
            }
            add(&live.subscribed, 1);
        }
        let outcome = match &mut role {
            RoleState::Receive(state) => {
                receiver::receive(&mut session, state, &plan, &live, &stop).await
            }
            RoleState::Publish(state) => {
                publisher::publish(&mut session, state, &plan, &live, &stop).await
            }
        };
        match outcome {
            Outcome::Stopped | Outcome::Done => {
                session.goodbye().await;
                live.closed();
                break;
            }
            Outcome::Moved(list) => {
                drop(session);
                live.closed();
                add(&live.redirects, 1);
                next = list
                    .into_iter()
                    .map(|endpoint| Target {
                        endpoint,
                        addr: None,
                    })
                    .collect();
            }
            Outcome::Failed(err) => {
                drop(session);
                live.closed();
                live.error(&client_id, reason_of(&err), &err);
                break;
            }
        }
    }
    if let (Job::Sub(_), RoleState::Receive(state)) = (&plan.job, &role) {
        live.subscriber_done(state.row(index));
    }
}
