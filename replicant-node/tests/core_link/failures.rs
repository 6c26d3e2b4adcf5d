//! The core link when cores misbehave: a core that is not the leader, garbage on the follow
//! stream, no core at all, and many transactions at once.

use super::*;

#[tokio::test]
async fn not_leader_sends_the_transaction_to_the_named_leader() {
    let c = certs();
    let log = Log::with(10);
    let id = identity(&c.core);
    let (follower, leader) = (FakeCore::start(&id, &log), FakeCore::start(&id, &log));
    *follower.state.not_leader.lock() = Some(leader.addr.to_string());
    // Only the follower is configured: the leader is known from its answer alone.
    let link = start(config(&c, &[&follower])).await;
    let committed = link.transact(vec![route_op("l/#")]).await.expect("commits");
    assert_eq!(committed.index, 11);
    assert_eq!(follower.state.transacts.load(Ordering::SeqCst), 1);
    assert_eq!(leader.state.transacts.load(Ordering::SeqCst), 1);
    assert!(has_route(link.replica(), "l/x"));
    assert_replica_equals(link.replica(), &log);
    link.stop();
    follower.kill();
    leader.kill();
}

#[tokio::test]
async fn malformed_frames_are_counted_and_the_link_reconnects() {
    let c = certs();
    let log = Log::with(10);
    let core = FakeCore::start(&identity(&c.core), &log);
    let link = start(config(&c, &[&core])).await;
    core.state.garbage.store(true, Ordering::SeqCst);
    log.append(entry(11)); // wakes the stream, which now sends garbage
    eventually("three malformed frames", Duration::from_secs(15), || {
        link.stats().malformed_frames >= 3
    })
    .await;
    assert!(link.stats().core_switches >= 3, "{:?}", link.stats());
    assert!(
        core.state.follows.lock().len() >= 3,
        "reconnected after each bad frame"
    );
    core.state.garbage.store(false, Ordering::SeqCst);
    eventually(
        "convergence once frames are sane",
        Duration::from_secs(15),
        || link.replica().applied_index() == 11,
    )
    .await;
    assert_replica_equals(link.replica(), &log);
    // Every reconnect resumed from where the replica was, never from the start.
    let follows = core.state.follows.lock().clone();
    assert!(follows[1..].iter().all(|&from| from >= 11), "{follows:?}");
    link.stop();
    core.kill();
}

#[tokio::test]
async fn start_fails_when_no_core_answers() {
    let c = certs();
    let unused = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let addr = unused.local_addr().expect("addr");
    drop(unused);
    let mut cfg = CoreLinkConfig::new(vec![addr.to_string()], identity(&c.node), "r1".into(), 1);
    cfg.transact_deadline = Duration::from_secs(2);
    let started = Instant::now();
    let err = CoreLink::start(cfg, Replica::new(), CancellationToken::new()).await;
    assert!(
        matches!(err, Err(CoreLinkError::Unreachable { .. })),
        "{:?}",
        err.err()
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    let cfg = CoreLinkConfig::new(Vec::new(), identity(&c.node), "r1".into(), 1);
    let err = CoreLink::start(cfg, Replica::new(), CancellationToken::new()).await;
    assert!(matches!(err, Err(CoreLinkError::NoCores)));
}

#[tokio::test]
async fn concurrent_transactions_share_requests_and_each_gets_its_own_results() {
    let c = certs();
    let log = Log::with(10);
    let core = FakeCore::start(&identity(&c.core), &log);
    let link = start(config(&c, &[&core])).await;
    // Replies are slowed by the follow stream's lag: callers arrive while one is in flight.
    core.state.delay_ms.store(100, Ordering::SeqCst);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..200usize {
        let link = link.clone();
        calls.spawn(async move {
            let ops: Vec<Op> = (0..1 + i % 3)
                .map(|k| route_op(&format!("co/{i}/{k}")))
                .collect();
            let n = ops.len();
            let committed = link.transact(ops).await.expect("commits");
            (i, n, committed)
        });
    }
    while let Some(done) = calls.join_next().await {
        let (i, n, committed) = done.expect("caller");
        assert_eq!(
            committed.results.len(),
            n,
            "caller {i} gets its own {n} results"
        );
        for k in 0..n {
            assert!(
                has_route(link.replica(), &format!("co/{i}/{k}")),
                "caller {i}'s op {k} applied before it returned"
            );
        }
    }
    let requests = core.state.transacts.load(Ordering::SeqCst);
    assert!(
        requests < 200,
        "200 concurrent callers sent {requests} requests"
    );
    println!("200 concurrent transactions in {requests} requests");
    link.stop();
    core.kill();
}

/// Three kinds of bad frame in turn: a length over the limit, bytes that do not decode, and
/// a frame that decodes to no kind at all.
pub(super) async fn send_garbage(
    send: &mut quinn::SendStream,
    st: &CoreState,
) -> Result<(), frame::FrameError> {
    let bytes: &[u8] = match st.garbage_sent.fetch_add(1, Ordering::SeqCst) % 3 {
        0 => &[0xff, 0xff, 0xff, 0xff],
        1 => &[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        _ => &[0, 0, 0, 0],
    };
    send.write_all(bytes).await?;
    // Keep the stream open: the client must react to the bytes, not to an end of stream.
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(())
}
