//! The life of one `conn`/`sub`/`pub` client: connect (following redirects), subscribe if it
//! is a subscriber, run its role loop ([`receiver`] for `conn` and `sub`, [`publisher`] for
//! `pub`) until the run stops or its count is done, and go where a DISCONNECT with a Server
//! Reference sends it. Counts everything in the run's [`Live`].
//!
//! It owns its session. Every network wait is bounded by the run's timeout; a failure is
//! counted by reason and ends the client, except for a client that keeps its session
//! (`-C false`): it reconnects, a bounded number of times with back-off, and the live
//! connections it lost and sessions it found gone are counted ([`crate::disconnects`]).

pub mod publisher;
pub mod receiver;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::io::AsyncWriteExt;

use crate::counters::Stop;
use crate::disconnects;
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

/// Whether clients with these options keep their session across connections, and so
/// reconnect when the broker takes one away: `-C false`, and on MQTT 5 a session expiry
/// (`-x`) above 0.
pub fn resumes(opts: &ClientOpts) -> bool {
    !opts.clean_start && (!opts.version.is_v5() || opts.session_expiry.unwrap_or(0) > 0)
}

/// The role state of client `index`.
fn new_role(plan: &Plan, index: usize, client_id: &str) -> anyhow::Result<RoleState> {
    Ok(match &plan.job {
        Job::Pub(spec) => {
            RoleState::Publish(publisher::PublishState::new(plan, spec, index, client_id)?)
        }
        Job::Sub(spec) => RoleState::Receive(receiver::ReceiveState::new(spec.limit)),
        Job::Conn | Job::Storm(_) => RoleState::Receive(receiver::ReceiveState::new(None)),
    })
}

/// Subscribes (a `sub` client) and runs the role loop on a fresh session.
async fn serve(
    session: &mut Session,
    role: &mut RoleState,
    index: usize,
    client_id: &str,
    ctx: (&Plan, &Live, &Stop),
) -> Outcome {
    let (plan, live, stop) = ctx;
    if let Job::Sub(spec) = &plan.job {
        let filter = Plan::topic_for(&spec.topic, index, client_id);
        if let Err(err) = session
            .subscribe(&filter, spec.qos, plan.opts.timeout)
            .await
        {
            return Outcome::Failed(err);
        }
        add(&live.subscribed, 1);
    }
    match role {
        RoleState::Receive(state) => receiver::receive(session, state, plan, live, stop).await,
        RoleState::Publish(state) => publisher::publish(session, state, plan, live, stop).await,
    }
}

/// Sleeps `d` unless the run stops first; false when it stopped.
async fn pause(stop: &Stop, d: Duration) -> bool {
    tokio::select! {
        biased;
        _ = stop.clone().wait() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Whether `err` is the subscriber's own idle timeout (no loss: nothing to reconnect for).
fn is_idle(err: &anyhow::Error) -> bool {
    err.downcast_ref::<Timeout>()
        .is_some_and(|t| t.0 == receiver::IDLE)
}

/// Targets for a Server Reference's list, rotated by the client's index so that the
/// clients of one evacuated server spread over the servers it names.
fn referenced(mut list: Vec<Endpoint>, index: usize) -> Vec<Target> {
    if !list.is_empty() {
        let by = index % list.len();
        list.rotate_left(by);
    }
    list.into_iter()
        .map(|endpoint| Target {
            endpoint,
            addr: None,
        })
        .collect()
}

/// Counts an accepted connect: the client's first, or a reconnect that found its session
/// gone (`resumes` and Session Present = 0).
fn count_connected(live: &Live, ever_connected: &mut bool, resumes: bool, present: bool) {
    if *ever_connected && resumes && !present {
        add(&live.sessions_lost, 1);
    }
    if !*ever_connected {
        *ever_connected = true;
        add(&live.clients_connected, 1);
    }
    live.opened();
}

/// After a role loop ended with `outcome` (neither stopped nor done): whether a live
/// connection was lost, and where to go — `Some(Some(list))` a Server Reference,
/// `Some(None)` the next of the run's servers, `None` nowhere (the client ends; the error
/// is counted).
fn after_loss(
    outcome: Outcome,
    resumes: bool,
    stop: &Stop,
    live: &Live,
    client_id: &str,
) -> (bool, Option<Option<Vec<Endpoint>>>) {
    match outcome {
        Outcome::Moved(list) => {
            add(&live.redirects, 1);
            (true, Some(Some(list)))
        }
        Outcome::Failed(err) => {
            let lost = !stop.is_set() && !is_idle(&err);
            if resumes && lost {
                return (true, Some(None));
            }
            live.error(client_id, reason_of(&err), &err);
            (lost, None)
        }
        Outcome::Stopped | Outcome::Done => (false, None),
    }
}

/// Runs client `index` of `plan` until the run stops, its count is done, or it fails. A
/// client that keeps its session ([`resumes`]) reconnects when it loses its connection:
/// to the Server Reference it was given, otherwise to the next of the run's servers, at
/// most [`disconnects::MAX_RETRIES`] failed attempts in a row, with back-off.
pub async fn run_client(
    index: usize,
    plan: Arc<Plan>,
    targets: Arc<Vec<Target>>,
    live: Arc<Live>,
    stop: Stop,
) {
    let client_id = plan.client_id(index);
    let resumes = resumes(&plan.opts);
    let first = targets[plan.endpoint_index(index)].clone();
    let mut last = first.endpoint.clone();
    let mut next = vec![first];
    let (mut ever_connected, mut lost, mut retry) = (false, 0u64, 0u32);
    let mut rounds = 0u64;
    let mut role = match new_role(&plan, index, &client_id) {
        Ok(role) => role,
        Err(err) => {
            live.error(&client_id, reason_of(&err), &err);
            live.client_done(0);
            return;
        }
    };
    loop {
        let attempt = tokio::select! {
            biased;
            _ = stop.clone().wait() => break,
            a = session::connect(next.clone(), &client_id, &plan.opts) => a,
        };
        let Some(mut session) = count_attempt(&live, &client_id, attempt) else {
            retry += 1;
            let again = resumes && lost > 0 && retry <= disconnects::MAX_RETRIES;
            if !again || !pause(&stop, disconnects::backoff(retry)).await {
                break;
            }
            next = disconnects::next_targets(&targets, &last, index);
            continue;
        };
        retry = 0;
        count_connected(&live, &mut ever_connected, resumes, session.session_present);
        last = session.endpoint.clone();
        let ctx = (&*plan, &*live, &stop);
        let outcome = serve(&mut session, &mut role, index, &client_id, ctx).await;
        if matches!(outcome, Outcome::Stopped | Outcome::Done) {
            session.goodbye().await;
            live.closed();
            break;
        }
        drop(session);
        live.closed();
        let (counted, again) = after_loss(outcome, resumes, &stop, &live, &client_id);
        lost += u64::from(counted);
        // Every way round (counted or not: a redirect, a drop) counts towards the bound.
        rounds += 1;
        if again.is_some() && rounds >= disconnects::MAX_LOSSES {
            let err = anyhow::anyhow!("gave up after {rounds} lost connections");
            live.error(&client_id, "lost_too_often".into(), &err);
            break;
        }
        if again.is_some() && !pause(&stop, disconnects::pause_after_loss(rounds)).await {
            break;
        }
        match again {
            Some(Some(list)) => next = referenced(list, index),
            Some(None) => next = disconnects::next_targets(&targets, &last, index),
            None => break,
        }
    }
    live.client_done(lost);
    if let (Job::Sub(_), RoleState::Receive(state)) = (&plan.job, &role) {
        live.subscriber_done(state.row(index));
    }
}
