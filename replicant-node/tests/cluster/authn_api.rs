//! The authentication API across a cluster (3 cores, 2 replicants): an import of 100 000
//! users through r1 completes and every user is on r2 too (time printed); users written
//! through the API survive a full cluster restart (every core and replicant stopped and
//! started again on the cores' data), and so does a built-in authorization rule written
//! through the API (enforced after the restart); with no core up, writes through the API
//! answer 503.

use std::time::{Duration, Instant};

use meshmq_shared::auth::password::{self, Algorithm, SaltPosition};
use meshmq_shared::codec::ProtocolVersion::V5;
use meshmq_shared::codec::{QoS, ReasonCode};
use meshmq_shared::config::{
    AuthenticatorConfig, AuthzSourceConfig, BuiltInDatabaseConfig, Config,
};
use meshmq_shared::tables::AuthzRulesKind;
use replicant_node::BrokerHandle;
use serde_json::json;

use crate::common::api_client::Api;
use crate::common::raw::{RawClient, connect_packet};
use crate::common::{unique, wait_until};
use crate::harness::{Cluster, WAIT, fast_timings, serial};

const USERS: &str = "/api/v5/authentication/password_based:built_in_database/users";
const IMPORT: &str = "/api/v5/authentication/password_based:built_in_database/import_users";
const RULES: &str = "/api/v5/authorization/sources/built_in_database/rules/users";
/// Users in the big import.
const BIG: usize = 100_000;
/// Deadline for the big import to reach every replica.
const BIG_WAIT: Duration = Duration::from_secs(60);

fn sha() -> Algorithm {
    Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    }
}

fn builtin(c: &mut Config) {
    c.authentication = vec![AuthenticatorConfig::BuiltInDatabase(
        BuiltInDatabaseConfig {
            password_hash_algorithm: sha(),
            ..BuiltInDatabaseConfig::default()
        },
    )];
    c.authorization.sources = vec![AuthzSourceConfig::BuiltInDatabase { enable: true }];
}

/// [`builtin`], and a write that cannot commit fails after 2 s instead of the default.
fn short_commits(c: &mut Config) {
    builtin(c);
    c.cluster.transact_timeout_ms = 2_000;
}

fn api(r: &BrokerHandle) -> Api {
    Api::new(r.http_addr().expect("http listener"))
}

async fn connect(r: &BrokerHandle, user: &str, secret: &str) -> (RawClient, ReasonCode) {
    let mut c = connect_packet(V5, &unique("authn-api"));
    c.username = Some(user.to_owned());
    c.password = Some(secret.as_bytes().to_vec().into());
    let (client, ack) = RawClient::connect_with(r.mqtt_addr(), c).await;
    (client, ack.code)
}

async fn connect_code(r: &BrokerHandle, user: &str, secret: &str) -> ReasonCode {
    connect(r, user, secret).await.1
}

/// An EMQX CSV (type=hash) of `n` salted SHA-256 users `user-<i>` with password `pw-<i>`.
fn big_csv(n: usize) -> String {
    let mut csv = String::from("user_id,password_hash,salt,is_superuser\n");
    for i in 0..n {
        let mut salt = [0u8; 16];
        salt[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let s = password::hash(&sha(), format!("pw-{i}").as_bytes(), salt).expect("hash");
        csv.push_str(&format!("user-{i},{},{},false\n", s.hash, s.salt));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_of_100000_users_reaches_both_replicants() {
    let _serial = serial().await;
    let cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant_with("r1", builtin).await;
    let r2 = cluster.start_replicant_with("r2", builtin).await;
    let csv = big_csv(BIG);

    let started = Instant::now();
    let (status, v) = api(&r1)
        .call("POST", IMPORT, Some("text/csv"), csv.as_bytes())
        .await;
    let answered = started.elapsed();
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["total"].as_u64(),
            v["success"].as_u64(),
            v["failed"].as_u64()
        ),
        (Some(BIG as u64), Some(BIG as u64), Some(0)),
        "{v}"
    );
    assert_eq!(
        r1.core().read(|t| t.auth_user_count()),
        BIG,
        "r1 applied its writes"
    );
    let everywhere = wait_until(BIG_WAIT, || r2.core().read(|t| t.auth_user_count()) == BIG).await;
    assert!(
        everywhere,
        "r2 has {} of {BIG} users after {BIG_WAIT:?}",
        r2.core().read(|t| t.auth_user_count())
    );
    println!(
        "import of {BIG} users: answered by r1 in {answered:?}, on r2 after {:?}",
        started.elapsed()
    );
    for i in [0, BIG / 2, BIG - 1] {
        let user = format!("user-{i}");
        let code = connect_code(&r2, &user, &format!("pw-{i}")).await;
        assert_eq!(code, ReasonCode::Success, "{user} on r2");
    }
    assert_eq!(
        connect_code(&r2, "user-7", "pw-8").await,
        ReasonCode::BadUserNameOrPassword
    );
    let (_, page) = api(&r2).get(&format!("{USERS}?page=1000&limit=100")).await;
    assert_eq!(page["meta"]["count"], BIG, "{}", page["meta"]);
    assert_eq!(page["meta"]["hasnext"], false);
    r1.shutdown().await;
    r2.shutdown().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_written_through_the_api_survive_a_full_cluster_restart() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(3, fast_timings()).await;
    let r1 = cluster.start_replicant_with("r1", short_commits).await;
    let r2 = cluster.start_replicant_with("r2", short_commits).await;
    let body = json!({ "user_id": "kept", "password": "pk", "is_superuser": true });
    let (status, v) = api(&r1).json("POST", USERS, &body).await;
    assert_eq!(status, 201, "{v}");
    let plain = br#"[{"user_id":"imported","password":"pi"}]"#;
    let (status, v) = api(&r2)
        .call(
            "POST",
            &format!("{IMPORT}?type=plain"),
            Some("application/json"),
            plain,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = api(&r1).delete(&format!("{USERS}/kept")).await;
    assert_eq!(status, 204);
    let rules = json!([{ "username": "imported", "rules": [
        { "topic": "secret/#", "permission": "deny", "action": "publish" }] }]);
    let (status, v) = api(&r2).json("POST", RULES, &rules).await;
    assert_eq!(status, 204, "{v}");
    let (mut before, code) = connect(&r1, "imported", "pi").await;
    assert_eq!(code, ReasonCode::Success);
    let replicated = wait_until(WAIT, || {
        r1.core().read(|t| {
            t.authz_rules(AuthzRulesKind::Username, "imported")
                .is_some()
        })
    })
    .await;
    assert!(replicated, "the rule reached r1's replica");
    assert_eq!(
        before
            .publish("secret/a", "x", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NotAuthorized,
        "the rule is enforced before the restart"
    );
    drop(before);
    let (status, _) = api(&r1).json("POST", USERS, &body).await;
    assert_eq!(status, 201, "created again after its deletion");

    // No core: a write through the API is refused with 503, and nothing is written.
    for id in 1..=3 {
        cluster.kill(id).await;
    }
    let late = json!({ "user_id": "late", "password": "pl" });
    let (status, v) = api(&r1).json("POST", USERS, &late).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE")),
        "{v}"
    );
    let file = br#"[{"user_id":"late2","password":"pl"}]"#;
    let (status, v) = api(&r2)
        .call(
            "POST",
            &format!("{IMPORT}?type=plain"),
            Some("application/json"),
            file,
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("0 of 1 users")),
        "{v}"
    );
    r1.shutdown().await;
    r2.shutdown().await;
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    cluster.wait_leader(None).await;
    let r3 = cluster.start_replicant_with("r3", builtin).await;
    let back = wait_until(WAIT, || {
        r3.core().read(|t| {
            t.auth_user("kept").is_some()
                && t.auth_user("imported").is_some()
                && t.authz_rules(AuthzRulesKind::Username, "imported")
                    .is_some()
        })
    })
    .await;
    assert!(
        back,
        "the users and the rule came back with the cores' data"
    );
    let (mut after, code) = connect(&r3, "imported", "pi").await;
    assert_eq!(code, ReasonCode::Success);
    assert_eq!(
        after
            .publish("secret/a", "x", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::NotAuthorized,
        "the rule written before the restart is enforced after it"
    );
    assert_eq!(
        after
            .publish("public/a", "x", QoS::AtLeastOnce, false)
            .await,
        ReasonCode::Success,
        "only the rule's topics are denied"
    );
    let (_, v) = api(&r3).get(&format!("{RULES}/imported")).await;
    assert_eq!(v["rules"][0]["topic"], "secret/#", "{v}");
    assert_eq!(connect_code(&r3, "kept", "pk").await, ReasonCode::Success);
    assert_eq!(
        connect_code(&r3, "imported", "pi").await,
        ReasonCode::Success
    );
    assert_eq!(
        connect_code(&r3, "kept", "pi").await,
        ReasonCode::BadUserNameOrPassword
    );
    let (_, v) = api(&r3).get(&format!("{USERS}/kept")).await;
    assert_eq!(v, json!({ "user_id": "kept", "is_superuser": true }));
    let (_, v) = api(&r3).get(USERS).await;
    assert_eq!(v["meta"]["count"], 2, "neither refused write happened: {v}");
    r3.shutdown().await;
    cluster.stop().await;
}
