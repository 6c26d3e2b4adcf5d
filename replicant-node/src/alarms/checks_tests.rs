//! The conditions of [`evaluate`] on hand-made snapshots.

use super::*;

fn quiet() -> Snapshot {
    let core = "127.0.0.1:4370".parse().ok();
    Snapshot {
        readings: Readings {
            mem_total: Some(1000),
            mem_used: Some(100),
            proc_rss: Some(10),
            fds_open: Some(10),
            fds_max: Some(1000),
        },
        link: LinkHealth::judge(core, 10, 10),
        no_leader: false,
        peers_down: Vec::new(),
        listeners: vec![("tcp:default".into(), 1, 2)],
        certs: vec![("ssl:default".into(), 1_000_000 + 365 * DAY_S)],
        now_s: 1_000_000,
    }
}

fn names(cfg: &AlarmsConfig, s: &Snapshot, active: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = evaluate(cfg, s, &|n| active.contains(&n))
        .into_iter()
        .map(|f| f.alarm.name)
        .collect();
    v.sort();
    v
}

#[test]
fn a_quiet_node_has_no_alarm() {
    assert!(names(&AlarmsConfig::default(), &quiet(), &[]).is_empty());
}

#[test]
fn each_condition_raises_its_alarm() {
    let cfg = AlarmsConfig::default();
    let mut s = quiet();
    s.readings.mem_used = Some(800);
    s.readings.proc_rss = Some(60);
    s.readings.fds_open = Some(900);
    s.listeners[0].1 = 2;
    s.certs[0].1 = s.now_s + 3 * DAY_S;
    s.peers_down = vec!["r2".into()];
    s.no_leader = true;
    s.link = LinkHealth::judge(s.link.core, 10, 20_011);
    assert_eq!(
        names(&cfg, &s, &[]),
        [
            "certificate_expiring:ssl:default",
            "high_fd_usage",
            "high_process_memory_usage",
            "high_system_memory_usage",
            "listener_max_connections:tcp:default",
            "no_raft_leader",
            "peer_link_down:r2",
            "replication_lag",
        ]
    );
    let found = evaluate(&cfg, &s, &|_| false);
    let lasting: Vec<&str> = found
        .iter()
        .filter(|f| f.lasting)
        .map(|f| f.alarm.name.as_str())
        .collect();
    assert_eq!(lasting, ["replication_lag", "peer_link_down:r2"]);
    let cert = found
        .iter()
        .find(|f| f.alarm.name.starts_with("certificate"))
        .map(|f| f.alarm.clone());
    assert_eq!(cert.map(|c| c.details["days_left"].clone()), Some(json!(3)));
}

#[test]
fn a_down_link_is_core_link_down_only() {
    let mut s = quiet();
    s.link = LinkHealth::judge(None, 10, 50_000);
    s.no_leader = true;
    assert_eq!(names(&AlarmsConfig::default(), &s, &[]), ["core_link_down"]);
}

#[test]
fn memory_and_fds_clear_below_the_level_that_raised_them() {
    let cfg = AlarmsConfig::default();
    let mut s = quiet();
    s.readings.mem_used = Some(680); // 68 %: under 70, over 65
    s.readings.fds_open = Some(780); // 78 %: under 80, over 75
    s.readings.proc_rss = Some(48); // 4.8 %: under 5, over 4.5
    assert!(names(&cfg, &s, &[]).is_empty(), "not raised under the mark");
    let all = [
        "high_system_memory_usage",
        "high_fd_usage",
        "high_process_memory_usage",
    ];
    assert_eq!(names(&cfg, &s, &all).len(), 3, "kept while active");
    s.readings.mem_used = Some(640);
    s.readings.fds_open = Some(740);
    s.readings.proc_rss = Some(44);
    assert!(names(&cfg, &s, &all).is_empty(), "cleared under the margin");
}

#[test]
fn expired_certificates_are_critical_and_zero_days_disables_the_check() {
    let mut s = quiet();
    s.certs[0].1 = s.now_s - 1;
    let found = evaluate(&AlarmsConfig::default(), &s, &|_| false);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].alarm.severity, Severity::Critical);
    let off = AlarmsConfig {
        cert_expiry_days: 0,
        ..AlarmsConfig::default()
    };
    assert!(names(&off, &s, &[]).is_empty());
}
