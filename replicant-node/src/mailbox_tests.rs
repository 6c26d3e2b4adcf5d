//! The mailbox's bound, drop policy and back-pressure signal.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use meshmq_shared::codec::QoS;
use meshmq_shared::config::QueueDropPolicy;

use super::{Mailbox, PushOutcome};
use crate::message::Delivery;

fn delivery(n: u8, qos: QoS) -> Delivery {
    Delivery::for_test(Instant::now(), "t", Bytes::from(vec![n]), qos)
}

/// A mailbox with a connection attached that drains it into an empty session.
fn online(cap: usize, policy: QueueDropPolicy) -> Mailbox {
    let mb = Mailbox::new(cap, policy, false);
    mb.set_online(true);
    mb.set_backlog(0);
    mb
}

fn payloads(mb: &Mailbox) -> Vec<u8> {
    let mut out = Vec::new();
    mb.drain(usize::MAX, &mut out);
    out.iter().map(|d| d.msg.payload[0]).collect()
}

#[test]
fn past_half_the_bound_a_push_asks_the_publisher_to_slow_down() {
    let mb = online(4, QueueDropPolicy::DropOldest);
    assert_eq!(mb.push(delivery(1, QoS::AtLeastOnce)), PushOutcome::Queued);
    assert_eq!(mb.push(delivery(2, QoS::AtLeastOnce)), PushOutcome::Queued);
    assert_eq!(
        mb.push(delivery(3, QoS::AtLeastOnce)),
        PushOutcome::Congested
    );
    assert!(mb.is_congested());
}

#[test]
fn a_full_queue_drops_by_policy_and_still_reports_congestion() {
    let mb = online(2, QueueDropPolicy::DropOldest);
    mb.push(delivery(1, QoS::AtLeastOnce));
    mb.push(delivery(2, QoS::AtLeastOnce));
    let outcome = mb.push(delivery(3, QoS::AtLeastOnce));
    assert_eq!(outcome, PushOutcome::Full);
    assert!(outcome.is_congested());
    assert_eq!(payloads(&mb), vec![2, 3]);

    let newest = online(2, QueueDropPolicy::DropNewest);
    newest.push(delivery(1, QoS::AtLeastOnce));
    newest.push(delivery(2, QoS::AtLeastOnce));
    assert_eq!(
        newest.push(delivery(3, QoS::AtLeastOnce)),
        PushOutcome::Full
    );
    assert_eq!(payloads(&newest), vec![1, 2]);
}

#[test]
fn a_queue_that_no_connection_drains_does_not_hold_publishers_back() {
    // Online (the client is connected elsewhere) but awaiting a hand-over request.
    let mb = Mailbox::new(2, QueueDropPolicy::DropOldest, false);
    mb.set_online(true);
    mb.push(delivery(1, QoS::AtLeastOnce));
    assert_eq!(mb.push(delivery(2, QoS::AtLeastOnce)), PushOutcome::Queued);
    assert_eq!(mb.push(delivery(3, QoS::AtLeastOnce)), PushOutcome::Dropped);
    assert!(!mb.is_congested());
    // A connection attaches and drains it: now the same queue is congested.
    mb.set_backlog(0);
    assert!(mb.is_congested());
    assert_eq!(mb.push(delivery(4, QoS::AtLeastOnce)), PushOutcome::Full);
}

#[tokio::test]
async fn a_hand_over_draining_the_queue_wakes_waiting_publishers() {
    let mb = online(4, QueueDropPolicy::DropOldest);
    for n in 0..3 {
        mb.push(delivery(n, QoS::AtLeastOnce));
    }
    let drained = mb.drained.notified();
    let mut drained = std::pin::pin!(drained);
    drained.as_mut().enable();
    let mut out = Vec::new();
    mb.drain(usize::MAX, &mut out);
    assert_eq!(out.len(), 3);
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("publisher was not woken");
}

#[test]
fn an_offline_queue_drops_without_holding_publishers_back() {
    let mb = Mailbox::new(2, QueueDropPolicy::DropOldest, false);
    assert_eq!(mb.push(delivery(0, QoS::AtMostOnce)), PushOutcome::Dropped);
    mb.push(delivery(1, QoS::AtLeastOnce));
    assert_eq!(mb.push(delivery(2, QoS::AtLeastOnce)), PushOutcome::Queued);
    let outcome = mb.push(delivery(3, QoS::AtLeastOnce));
    assert_eq!(outcome, PushOutcome::Dropped);
    assert!(!outcome.is_congested());
    assert!(!mb.is_congested());
}

#[test]
fn the_sessions_backlog_behind_its_window_counts_toward_the_high_water_mark() {
    // A QoS 1 subscriber that acks slowly: the connection drains the mailbox into the
    // session at once, so the mailbox is empty while the session's queue fills.
    let mb = online(10, QueueDropPolicy::DropOldest);
    mb.set_backlog(5);
    assert!(!mb.is_congested());
    assert_eq!(
        mb.push(delivery(1, QoS::AtLeastOnce)),
        PushOutcome::Congested
    );
    let mut out = Vec::new();
    mb.drain(usize::MAX, &mut out);
    assert!(mb.is_empty());
    mb.set_backlog(10);
    assert!(
        mb.is_congested(),
        "an empty mailbox over a full session queue is congested"
    );
    mb.set_backlog(5);
    assert!(!mb.is_congested());
}

#[tokio::test]
async fn a_backlog_back_under_the_high_water_mark_wakes_waiting_publishers() {
    let mb = online(10, QueueDropPolicy::DropOldest);
    mb.set_backlog(10);
    let drained = mb.drained.notified();
    let mut drained = std::pin::pin!(drained);
    drained.as_mut().enable();
    mb.set_backlog(9);
    assert!(
        drained.as_mut().now_or_never().is_none(),
        "woken while still past the high-water mark"
    );
    mb.set_backlog(2);
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("publisher was not woken");
}

#[tokio::test]
async fn a_connection_that_stops_draining_releases_waiting_publishers() {
    for goes_offline in [true, false] {
        let mb = online(10, QueueDropPolicy::DropOldest);
        mb.set_backlog(10);
        let drained = mb.drained.notified();
        let mut drained = std::pin::pin!(drained);
        drained.as_mut().enable();
        if goes_offline {
            mb.set_online(false); // closed
        } else {
            mb.release(); // kicked: the session is handed over, the client is online elsewhere
        }
        tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .expect("publisher was not woken");
        assert!(!mb.is_congested(), "the old backlog still counts");
    }
}
