//! Applied-index barriers over the peer links: waiting, down peers, timeouts, concurrency,
//! order with messages, restarts.

use super::*;

// ---- barriers ----

/// Links `x` and `y` both ways (acks travel on the answering node's own link).
async fn link_both(x_name: &str, x: &Node, y_name: &str, y: &Node) {
    link_up(x, y_name, y).await;
    link_up(y, x_name, x).await;
}

fn report(waited_for: &[&str], missing: &[&str]) -> BarrierReport {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
    BarrierReport {
        waited_for: owned(waited_for),
        missing: owned(missing),
    }
}

/// Awaits a spawned barrier, failing after [`DEADLINE`].
async fn join(task: tokio::task::JoinHandle<BarrierReport>) -> BarrierReport {
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("barrier returned")
        .expect("barrier task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_waits_until_the_peer_has_applied_the_index() {
    let dir = cert_dir(&["a", "b"]);
    let a = start(&dir, "a", 16);
    let b = start(&dir, "b", 16);
    link_both("a", &a, "b", &b).await;
    b.set_applied(41);

    let peers = a.peers.clone();
    let task = tokio::spawn(async move { peers.barrier(42, DEADLINE).await });
    wait_for("the barrier at b", || b.stats().barriers_received == 1).await;
    // b holds the barrier and cannot ack it before its replica reaches 42.
    assert!(!task.is_finished(), "returned before b applied 42");
    b.set_applied(42);
    assert_eq!(join(task).await, report(&["b"], &[]));

    // A lower index shares b's ack: nothing is sent, nothing waited for.
    let t = Instant::now();
    assert_eq!(a.peers.barrier(40, DEADLINE).await, report(&["b"], &[]));
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let s = a.stats();
    assert_eq!(s.barrier_timeouts, 0);
    assert_eq!(b.stats().barriers_received, 1);
    assert_eq!(b.stats().barriers_unanswered, 0);
    assert_eq!(s.link("b").sent, 0, "barriers are not messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_does_not_wait_for_a_down_peer() {
    let dir = cert_dir(&["a", "b", "c", "d"]);
    let a = start(&dir, "a", 16);
    let b = start(&dir, "b", 16);
    let c = start(&dir, "c", 16);
    link_both("a", &a, "b", &b).await;
    link_both("a", &a, "c", &c).await;
    c.set_applied(10);

    drop(b);
    wait_for("link to b down", || !a.stats().link("b").up).await;
    let t = Instant::now();
    assert_eq!(a.peers.barrier(10, DEADLINE).await, report(&["c"], &[]));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // No link at all: returns at once.
    let d = start(&dir, "d", 16);
    let t = Instant::now();
    assert_eq!(d.peers.barrier(10, DEADLINE).await, report(&[], &[]));
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(a.stats().barrier_timeouts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_acks_is_missing_after_the_timeout() {
    let dir = cert_dir(&["a", "b"]);
    let a = start(&dir, "a", 16);
    let b = start(&dir, "b", 16);
    link_both("a", &a, "b", &b).await;

    let timeout = Duration::from_millis(300);
    let t = Instant::now();
    assert_eq!(a.peers.barrier(5, timeout).await, report(&["b"], &["b"]));
    assert!(t.elapsed() >= timeout, "{:?}", t.elapsed());
    assert_eq!(a.stats().barrier_timeouts, 1);
    // b gives up on it too, within its answer bound.
    wait_for("b dropping the barrier", || {
        b.stats().barriers_unanswered == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_is_dropped_when_the_peer_has_no_link_back() {
    let dir = cert_dir(&["a", "b"]);
    let a = start(&dir, "a", 16);
    let b = start(&dir, "b", 16);
    link_up(&a, "b", &b).await;
    b.set_applied(10);

    let timeout = Duration::from_millis(300);
    assert_eq!(a.peers.barrier(5, timeout).await, report(&["b"], &["b"]));
    wait_for("b counting the unanswered barrier", || {
        b.stats().barriers_unanswered == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_barriers_share_acks_and_all_complete() {
    let dir = cert_dir(&["a", "b", "c"]);
    let a = start(&dir, "a", 16);
    let b = start(&dir, "b", 16);
    let c = start(&dir, "c", 16);
    link_both("a", &a, "b", &b).await;
    link_both("a", &a, "c", &c).await;

    let tasks: Vec<_> = (1..=20u64)
        .map(|i| {
            let peers = a.peers.clone();
            tokio::spawn(async move { peers.barrier(i, DEADLINE).await })
        })
        .collect();
    wait_for("every barrier at b and c", || {
        b.stats().barriers_received == 20 && c.stats().barriers_received == 20
    })
    .await;
    b.set_applied(10);
    c.set_applied(20);
    wait_for("barriers 1..=10 done", || {
        tasks[..10].iter().all(|t| t.is_finished())
    })
    .await;
    // b acked 10 at most: nothing above can be done.
    assert!(tasks[10..].iter().all(|t| !t.is_finished()));
    b.set_applied(20);
    for task in tasks {
        assert_eq!(join(task).await, report(&["b", "c"], &[]));
    }
    assert_eq!(a.stats().barrier_timeouts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_before_a_barrier_arrive_before_it_returns() {
    let dir = cert_dir(&["a", "b"]);
    let a = start(&dir, "a", 4_096);
    let b = start(&dir, "b", 16);
    link_both("a", &a, "b", &b).await;
    b.set_applied(7);

    let to = b.addr();
    for i in 0..2_000 {
        a.peers.forward("b", &to, msg("a", i));
    }
    assert_eq!(a.peers.barrier(7, DEADLINE).await, report(&["b"], &[]));
    assert_eq!(b.seqs_from("a"), (0..2_000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_of_a_restarted_peer_do_not_count_for_its_new_replica() {
    let dir = cert_dir(&["a", "b"]);
    let a = start(&dir, "a", 16);
    let b = start(&dir, "b", 16);
    link_both("a", &a, "b", &b).await;
    b.set_applied(10);
    assert_eq!(a.peers.barrier(10, DEADLINE).await, report(&["b"], &[]));

    // b restarts on its port with an empty replica.
    let b_sock = b.peers.local_addr();
    drop(b);
    wait_for("link to b down", || !a.stats().link("b").up).await;
    let mut b2 = None;
    wait_for("b rebound on its port", || {
        b2 = try_start(identity(&dir, "b"), "b", b_sock, (16, QUEUE_BYTES)).ok();
        b2.is_some()
    })
    .await;
    let b2 = b2.expect("b restarted");
    link_up(&b2, "a", &a).await;
    wait_for("link to b up again", || a.stats().link("b").up).await;

    let timeout = Duration::from_millis(300);
    assert_eq!(a.peers.barrier(5, timeout).await, report(&["b"], &["b"]));
    b2.set_applied(5);
    assert_eq!(a.peers.barrier(5, DEADLINE).await, report(&["b"], &[]));
}
