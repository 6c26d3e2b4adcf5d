//! The mailbox's bound, drop policy and back-pressure signal.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use meshmq_shared::codec::QoS;
use meshmq_shared::config::QueueDropPolicy;

use super::{Mailbox, NodeBudget, PushOutcome, QueueLimits, TakeStop};
use crate::message::Delivery;

/// A delivery on topic "t" whose one-byte payload is `n` (2 bytes counted).
fn delivery(n: u8, qos: QoS) -> Delivery {
    Delivery::for_test(Instant::now(), "t", Bytes::from(vec![n]), qos)
}

/// A delivery of `size` counted bytes (topic "t" and a payload starting with `n`).
fn sized(n: u8, size: usize, qos: QoS) -> Delivery {
    let mut payload = vec![0; size - 1];
    payload[0] = n;
    Delivery::for_test(Instant::now(), "t", Bytes::from(payload), qos)
}

fn limits(cap: usize, policy: QueueDropPolicy) -> QueueLimits {
    QueueLimits {
        max_len: cap,
        max_bytes: usize::MAX,
        policy,
        store_qos0_offline: false,
        max_write_bytes: usize::MAX,
    }
}

/// An offline mailbox of `cap` messages with the node's budget to itself.
fn mailbox(cap: usize, policy: QueueDropPolicy) -> Mailbox {
    Mailbox::new(limits(cap, policy), NodeBudget::new(usize::MAX))
}

/// A mailbox with a connection attached that drains it into an empty session.
fn online(cap: usize, policy: QueueDropPolicy) -> Mailbox {
    let mb = mailbox(cap, policy);
    mb.set_online(true);
    mb.set_backlog(0, 0);
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
    let mb = mailbox(2, QueueDropPolicy::DropOldest);
    mb.set_online(true);
    mb.push(delivery(1, QoS::AtLeastOnce));
    assert_eq!(mb.push(delivery(2, QoS::AtLeastOnce)), PushOutcome::Queued);
    assert_eq!(mb.push(delivery(3, QoS::AtLeastOnce)), PushOutcome::Dropped);
    assert!(!mb.is_congested());
    // A connection attaches and drains it: now the same queue is congested.
    mb.set_backlog(0, 0);
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
    let mb = mailbox(2, QueueDropPolicy::DropOldest);
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
    mb.set_backlog(5, 10);
    assert!(!mb.is_congested());
    assert_eq!(
        mb.push(delivery(1, QoS::AtLeastOnce)),
        PushOutcome::Congested
    );
    let mut out = Vec::new();
    mb.drain(usize::MAX, &mut out);
    assert!(mb.is_empty());
    mb.set_backlog(10, 20);
    assert!(
        mb.is_congested(),
        "an empty mailbox over a full session queue is congested"
    );
    mb.set_backlog(5, 10);
    assert!(!mb.is_congested());
}

#[tokio::test]
async fn a_backlog_back_under_the_high_water_mark_wakes_waiting_publishers() {
    let mb = online(10, QueueDropPolicy::DropOldest);
    mb.set_backlog(10, 20);
    let drained = mb.drained.notified();
    let mut drained = std::pin::pin!(drained);
    drained.as_mut().enable();
    mb.set_backlog(9, 18);
    assert!(
        drained.as_mut().now_or_never().is_none(),
        "woken while still past the high-water mark"
    );
    mb.set_backlog(2, 4);
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("publisher was not woken");
}

#[tokio::test]
async fn a_connection_that_stops_draining_releases_waiting_publishers() {
    for goes_offline in [true, false] {
        let mb = online(10, QueueDropPolicy::DropOldest);
        mb.set_backlog(10, 20);
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

fn bounded(max_len: usize, max_bytes: usize, policy: QueueDropPolicy) -> Mailbox {
    let mb = Mailbox::new(
        QueueLimits {
            max_len,
            max_bytes,
            ..limits(max_len, policy)
        },
        NodeBudget::new(usize::MAX),
    );
    mb.set_online(true);
    mb.set_backlog(0, 0);
    mb
}

#[test]
fn the_sessions_own_queue_and_the_mailbox_share_one_bound() {
    // The session holds 3 beyond its window; the bound is 4 for both together.
    let mb = bounded(4, usize::MAX, QueueDropPolicy::DropOldest);
    mb.set_backlog(3, 6);
    assert_eq!(
        mb.push(delivery(1, QoS::AtLeastOnce)),
        PushOutcome::Congested
    );
    assert_eq!(mb.push(delivery(2, QoS::AtLeastOnce)), PushOutcome::Full);
    assert_eq!(
        payloads(&mb),
        vec![2],
        "drop_oldest evicted the mailbox's oldest"
    );

    let newest = bounded(4, usize::MAX, QueueDropPolicy::DropNewest);
    newest.set_backlog(3, 6);
    newest.push(delivery(1, QoS::AtLeastOnce));
    assert_eq!(
        newest.push(delivery(2, QoS::AtLeastOnce)),
        PushOutcome::Full
    );
    assert_eq!(payloads(&newest), vec![1]);

    // A session queue that fills the bound alone: nothing is evicted, the new one goes.
    let full = bounded(4, usize::MAX, QueueDropPolicy::DropOldest);
    full.set_backlog(4, 8);
    assert_eq!(full.push(delivery(1, QoS::AtLeastOnce)), PushOutcome::Full);
    assert!(full.is_empty());
    // Offline, the backlog still counts (a closed connection left it in the session).
    full.set_online(false);
    assert_eq!(
        full.push(delivery(1, QoS::AtLeastOnce)),
        PushOutcome::Dropped
    );
}

#[test]
fn the_byte_bound_drops_by_policy_and_an_empty_queue_takes_anything() {
    let mb = bounded(100, 100, QueueDropPolicy::DropOldest);
    mb.push(sized(1, 60, QoS::AtLeastOnce));
    mb.push(sized(2, 30, QoS::AtLeastOnce));
    assert_eq!(mb.usage(), (2, 90));
    assert_eq!(
        mb.push(sized(3, 20, QoS::AtLeastOnce)),
        PushOutcome::Dropped
    );
    assert_eq!(mb.usage(), (2, 50), "the 60-byte oldest made room");
    assert_eq!(mb.push(sized(4, 200, QoS::AtLeastOnce)), PushOutcome::Full);
    assert_eq!(
        payloads(&mb),
        vec![4],
        "alone, over the bound: still queued"
    );

    let newest = bounded(100, 100, QueueDropPolicy::DropNewest);
    newest.push(sized(1, 60, QoS::AtLeastOnce));
    assert_eq!(
        newest.push(sized(2, 50, QoS::AtLeastOnce)),
        PushOutcome::Full
    );
    assert_eq!(payloads(&newest), vec![1]);
}

#[test]
fn qos0_past_the_write_budget_of_a_draining_connection_is_dropped() {
    let mb = Mailbox::new(
        QueueLimits {
            max_write_bytes: 100,
            ..limits(1_000, QueueDropPolicy::DropOldest)
        },
        NodeBudget::new(usize::MAX),
    );
    mb.set_online(true);
    mb.set_backlog(0, 0);
    assert_eq!(mb.push(sized(1, 60, QoS::AtMostOnce)), PushOutcome::Queued);
    assert_eq!(mb.push(sized(2, 60, QoS::AtMostOnce)), PushOutcome::Dropped);
    assert_eq!(
        mb.push(sized(3, 60, QoS::AtLeastOnce)),
        PushOutcome::Queued,
        "QoS 1 waits in the session's queue instead"
    );
    assert_eq!(payloads(&mb), vec![1, 3]);
    // A write in progress counts as waiting too.
    mb.set_writing(50);
    assert_eq!(mb.push(sized(4, 60, QoS::AtMostOnce)), PushOutcome::Dropped);
    mb.set_writing(0);
    assert_eq!(
        mb.push(sized(5, 500, QoS::AtMostOnce)),
        PushOutcome::Queued,
        "nothing waiting: one message goes, however large"
    );
}

#[test]
fn every_mailbox_of_the_node_shares_its_byte_budget() {
    let node = NodeBudget::new(100);
    let a = Mailbox::new(limits(10, QueueDropPolicy::DropOldest), node.clone());
    let b = Mailbox::new(limits(10, QueueDropPolicy::DropOldest), node.clone());
    a.push(sized(1, 60, QoS::AtLeastOnce));
    assert_eq!(node.held(), 60);
    assert_eq!(b.push(sized(2, 60, QoS::AtLeastOnce)), PushOutcome::Dropped);
    assert!(b.is_empty());
    a.set_pending(1, 30);
    assert_eq!(node.held(), 90, "the session's own queue counts");
    assert_eq!(payloads(&a), vec![1]);
    assert_eq!(node.held(), 30);
    b.push(sized(3, 60, QoS::AtLeastOnce));
    assert_eq!(node.held(), 90);
    drop(b);
    a.set_writing(10);
    assert_eq!(node.held(), 40, "a dropped mailbox gives its bytes back");
    drop(a);
    assert_eq!(node.held(), 0);
}

#[test]
fn the_connection_takes_in_order_what_its_window_and_write_admit() {
    let mb = online(100, QueueDropPolicy::DropOldest);
    for (n, qos) in [
        (1, QoS::AtMostOnce),
        (2, QoS::AtLeastOnce),
        (3, QoS::ExactlyOnce),
        (4, QoS::AtMostOnce),
    ] {
        mb.push(delivery(n, qos));
    }
    let mut out = Vec::new();
    assert_eq!(
        mb.take_admitted(100, usize::MAX, 1, &mut out),
        TakeStop::Window
    );
    let got: Vec<u8> = out.iter().map(|d| d.msg.payload[0]).collect();
    assert_eq!(
        got,
        vec![1, 2],
        "the QoS 0 behind a closed window waits its turn"
    );
    out.clear();
    assert_eq!(
        mb.take_admitted(1, usize::MAX, 5, &mut out),
        TakeStop::Limit
    );
    assert_eq!(out.len(), 1, "at most `max`");
    mb.push(delivery(5, QoS::AtMostOnce));
    mb.push(delivery(6, QoS::AtMostOnce));
    assert_eq!(mb.take_admitted(100, 1, 5, &mut out), TakeStop::Limit);
    assert_eq!(
        out.len(),
        2,
        "a byte budget smaller than a message still takes one"
    );
    assert_eq!(mb.take_admitted(100, 0, 5, &mut out), TakeStop::Limit);
    assert_eq!(mb.take_admitted(100, 4, 5, &mut out), TakeStop::Empty);
    let got: Vec<u8> = out.iter().map(|d| d.msg.payload[0]).collect();
    assert_eq!(got, vec![3, 4, 5, 6]);
}

#[test]
fn the_node_counts_every_message_its_queues_hold() {
    let node = NodeBudget::new(usize::MAX);
    let a = Mailbox::new(limits(3, QueueDropPolicy::DropOldest), node.clone());
    let b = Mailbox::new(limits(3, QueueDropPolicy::DropNewest), node.clone());
    for n in 0..5 {
        a.push(delivery(n, QoS::AtLeastOnce));
        b.push(delivery(n, QoS::AtLeastOnce));
    }
    assert_eq!(
        node.queued(),
        6,
        "each queue keeps 3: evicted and refused ones go"
    );
    let mut out = Vec::new();
    a.take_admitted(100, usize::MAX, 1, &mut out);
    assert_eq!(node.queued(), 5, "taken for sending");
    a.set_pending(4, 8);
    assert_eq!(node.queued(), 9, "the session's own queue counts");
    a.set_pending(1, 2);
    assert_eq!(node.queued(), 6);
    b.drain(1, &mut out);
    assert_eq!(node.queued(), 5);
    assert_eq!(b.clear(), 2);
    assert_eq!(node.queued(), 3);
    drop(a);
    assert_eq!(node.queued(), 0, "a dropped mailbox takes its count along");
    drop(b);
    assert_eq!(node.queued(), 0);
}
