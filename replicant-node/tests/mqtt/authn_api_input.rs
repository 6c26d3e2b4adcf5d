//! What the authentication API does with hostile or oversized input: a body that does not
//! deserialize is refused naming the field, never echoing the value sent (a password).

use meshmq_shared::config::UserIdType;

use crate::authn::builtin;
use crate::common::api_client::Api;
use crate::common::{self, TestBroker};

const USERS: &str = "/api/v5/authentication/password_based:built_in_database/users";

fn api(b: &TestBroker) -> Api {
    Api::new(b.http_addr().expect("http listener"))
}

#[tokio::test]
async fn a_body_that_does_not_deserialize_is_refused_without_echoing_its_values() {
    let b = common::start_broker(builtin(UserIdType::Username)).await;
    let api = api(&b);
    let json = Some("application/json");
    assert_eq!(
        api.call("POST", USERS, json, br#"{"user_id":"u","password":"p"}"#)
            .await
            .0,
        201
    );
    let cases: [(&str, String, &[u8], &str); 5] = [
        (
            "POST",
            USERS.into(),
            br#"{"user_id":"x","password":123456}"#,
            "`password`",
        ),
        (
            "POST",
            USERS.into(),
            br#"{"user_id":"x","password":"p","s3cr3t":1}"#,
            "unknown field",
        ),
        (
            "POST",
            USERS.into(),
            br#"{"user_id":"x","password":"s3cr3t""#,
            "not valid JSON",
        ),
        (
            "PUT",
            format!("{USERS}/u"),
            br#"{"password":123456}"#,
            "`password`",
        ),
        (
            "PUT",
            format!("{USERS}/u"),
            br#"{"is_superuser":"s3cr3t"}"#,
            "`is_superuser`",
        ),
    ];
    for (method, path, body, names) in cases {
        let (status, v) = api.call(method, &path, json, body).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("BAD_REQUEST")),
            "{v}"
        );
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(names),
            "{method} {}: {message}",
            String::from_utf8_lossy(body)
        );
        assert!(
            !message.contains("123456") && !message.contains("s3cr3t"),
            "{message}"
        );
    }
    // The same for a ban.
    let (status, v) = api
        .call(
            "POST",
            "/api/v5/banned",
            json,
            br#"{"as":"clientid","who":123456}"#,
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`who`") && !message.contains("123456"),
        "{message}"
    );
}
