//! The rows of a data export as JSON, and back to table rows: built-in users (their stored
//! password exactly as the `auth_users` table holds it, SCRAM credentials included), rule
//! lists of the built-in authorization source, bans (EMQX's `banned` shape), retained
//! messages (payload and binary properties in base64).
//!
//! Owns the conversion both ways and the checks of a row's fields; it never decides
//! whether a row may be written (the import's plan does, against the tables' own rules)
//! and never writes. Error texts name a field, never a value (a row may hold a hash).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use meshmq_proto::tables::{
    AuthUser, AuthzRules, AuthzRulesKind, BannedRow, KeyValue, PasswordHash, RetainedMessage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::authz::rules_json::{self, RuleJson};
use crate::banned::api::{canonical_who, time_field};
use crate::banned::{as_from_label, as_label, rfc3339};

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn decode(field: &str, text: &str) -> Result<Bytes, String> {
    B64.decode(text)
        .map(Bytes::from)
        .map_err(|_| format!("{field} is not base64"))
}

/// A built-in user with its stored credential.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserJson {
    /// The user id (a username or a client id, as the authenticator says).
    pub user_id: String,
    /// Whether the user is a superuser.
    #[serde(default)]
    pub is_superuser: bool,
    /// The stored password, as the table has it.
    pub password: PasswordJson,
}

/// A stored password (`PasswordHash` of the tables): the algorithm with its parameters and
/// the hash and salt, or SCRAM credentials (binary fields in base64). Empty fields omitted.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordJson {
    /// `sha256`, `pbkdf2`, `bcrypt`, `scram_sha256`, ...
    pub name: String,
    /// sha256 / sha512: `prefix`, `suffix` or `disable`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub salt_position: String,
    /// pbkdf2: `sha256` or `sha512`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac_fun: String,
    /// pbkdf2: iterations.
    #[serde(skip_serializing_if = "is_zero")]
    pub iterations: u32,
    /// pbkdf2: derived key length (0: the MAC's).
    #[serde(skip_serializing_if = "is_zero")]
    pub dk_length: u32,
    /// bcrypt: cost of new hashes.
    #[serde(skip_serializing_if = "is_zero")]
    pub salt_rounds: u32,
    /// The hash as stored.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hash: String,
    /// The salt as stored.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub salt: String,
    /// SCRAM StoredKey, base64.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scram_stored_key: String,
    /// SCRAM ServerKey, base64.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scram_server_key: String,
    /// SCRAM salt, base64.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scram_salt: String,
    /// SCRAM iterations.
    #[serde(skip_serializing_if = "is_zero")]
    pub scram_iterations: u32,
}

impl UserJson {
    /// The export form of a table row.
    pub fn from_row(u: &AuthUser) -> UserJson {
        let p = u.password.clone().unwrap_or_default();
        UserJson {
            user_id: u.user_id.clone(),
            is_superuser: u.is_superuser,
            password: PasswordJson {
                name: p.name,
                salt_position: p.salt_position,
                mac_fun: p.mac_fun,
                iterations: p.iterations,
                dk_length: p.dk_length,
                salt_rounds: p.salt_rounds,
                hash: p.hash,
                salt: p.salt,
                scram_stored_key: B64.encode(&p.scram_stored_key),
                scram_server_key: B64.encode(&p.scram_server_key),
                scram_salt: B64.encode(&p.scram_salt),
                scram_iterations: p.scram_iterations,
            },
        }
    }

    /// The table row (its credential is checked by the table's rules, not here).
    pub fn to_row(self) -> Result<AuthUser, String> {
        let p = self.password;
        Ok(AuthUser {
            user_id: self.user_id,
            is_superuser: self.is_superuser,
            password: Some(PasswordHash {
                name: p.name,
                salt_position: p.salt_position,
                mac_fun: p.mac_fun,
                iterations: p.iterations,
                dk_length: p.dk_length,
                salt_rounds: p.salt_rounds,
                hash: p.hash,
                salt: p.salt,
                scram_stored_key: decode("password.scram_stored_key", &p.scram_stored_key)?,
                scram_server_key: decode("password.scram_server_key", &p.scram_server_key)?,
                scram_salt: decode("password.scram_salt", &p.scram_salt)?,
                scram_iterations: p.scram_iterations,
            }),
        })
    }
}

/// The rules of one username, one client id, or of all clients.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthzJson {
    /// `username`, `clientid` or `all`.
    pub kind: String,
    /// The username or client id (empty for `all`).
    #[serde(default)]
    pub key: String,
    /// The rules, in order (EMQX's rule shape).
    pub rules: Vec<RuleJson>,
}

impl AuthzJson {
    /// The export form of a table row.
    pub fn from_row(r: &AuthzRules) -> AuthzJson {
        let kind = match AuthzRulesKind::try_from(r.kind) {
            Ok(AuthzRulesKind::Clientid) => "clientid",
            Ok(AuthzRulesKind::All) => "all",
            _ => "username",
        };
        AuthzJson {
            kind: kind.to_owned(),
            key: r.key.clone(),
            rules: r.rules.iter().map(RuleJson::from_row).collect(),
        }
    }

    /// The table row, checked as the rules API checks it.
    pub fn to_row(&self) -> Result<AuthzRules, String> {
        let kind = match self.kind.as_str() {
            "username" => AuthzRulesKind::Username,
            "clientid" => AuthzRulesKind::Clientid,
            "all" => AuthzRulesKind::All,
            _ => return Err("kind must be username, clientid or all".into()),
        };
        if kind == AuthzRulesKind::All && !self.key.is_empty() {
            return Err("key must be empty for kind all".into());
        }
        rules_json::row(kind, &self.key, &self.rules).map_err(|e| e.message)
    }
}

/// A ban, as `GET /api/v5/banned` shows it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BannedJson {
    /// `clientid`, `username`, `peerhost` or `peerhost_net`.
    #[serde(rename = "as")]
    pub kind: String,
    /// What is banned.
    pub who: String,
    /// Who banned.
    #[serde(default)]
    pub by: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// From when: RFC 3339 text or unix seconds.
    #[schema(value_type = Object)]
    pub at: Value,
    /// Until when: RFC 3339 text, unix seconds or `"infinity"`.
    #[schema(value_type = Object)]
    pub until: Value,
}

impl BannedJson {
    /// The export form of a table row.
    pub fn from_row(r: &BannedRow) -> BannedJson {
        BannedJson {
            kind: as_label(r.kind).to_owned(),
            who: r.who.clone(),
            by: r.by.clone(),
            reason: r.reason.clone(),
            at: rfc3339::format(r.at).into(),
            until: if r.until == 0 {
                "infinity".into()
            } else {
                rfc3339::format(r.until).into()
            },
        }
    }

    /// The table row (bounds are the table's rules, checked by the plan).
    pub fn to_row(&self) -> Result<BannedRow, String> {
        let kind = as_from_label(&self.kind)
            .ok_or("as must be clientid, username, peerhost or peerhost_net")?;
        let who = canonical_who(kind, &self.who).map_err(|e| e.message)?;
        let at = time_field("at", &self.at, false).map_err(|e| e.message)?;
        let until = time_field("until", &self.until, true).map_err(|e| e.message)?;
        Ok(BannedRow {
            kind: kind as i32,
            who,
            by: self.by.clone(),
            reason: self.reason.clone(),
            at,
            until,
        })
    }

    /// `(as, who)` of a row, for the plan's duplicate check.
    pub fn key(row: &BannedRow) -> (i32, String) {
        (row.kind, row.who.clone())
    }
}

/// A retained message with its properties.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetainedJson {
    /// The topic.
    pub topic: String,
    /// The payload, base64.
    pub payload: String,
    /// 0, 1 or 2.
    pub qos: u32,
    /// The MQTT 5 properties kept with it.
    #[serde(default)]
    pub properties: PropertiesJson,
    /// When it was published (ms since the epoch).
    #[serde(default)]
    pub published_at_ms: u64,
    /// When it expires (ms since the epoch); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// The properties of a retained message (absent ones omitted).
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PropertiesJson {
    /// 0 or 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_format_indicator: Option<u32>,
    /// Content type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Response topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// Correlation data, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<String>,
    /// User properties in order (a key may repeat).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<UserProperty>,
}

/// One user property.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserProperty {
    /// Name.
    pub key: String,
    /// Value.
    pub value: String,
}

impl RetainedJson {
    /// The export form of a table row.
    pub fn from_row(m: &RetainedMessage) -> RetainedJson {
        RetainedJson {
            topic: m.topic.clone(),
            payload: B64.encode(&m.payload),
            qos: m.qos,
            properties: PropertiesJson {
                payload_format_indicator: m.payload_format_indicator,
                content_type: m.content_type.clone(),
                response_topic: m.response_topic.clone(),
                correlation_data: m.correlation_data.as_ref().map(|c| B64.encode(c)),
                user_properties: m
                    .user_properties
                    .iter()
                    .map(|kv| UserProperty {
                        key: kv.key.clone(),
                        value: kv.value.clone(),
                    })
                    .collect(),
            },
            published_at_ms: m.published_at_ms,
            expires_at_ms: m.expires_at_ms,
        }
    }

    /// The table row (topic and QoS are the table's rules, checked by the plan).
    pub fn to_row(self) -> Result<RetainedMessage, String> {
        let payload = decode("payload", &self.payload)?;
        if payload.is_empty() {
            return Err("payload is empty (an empty retained message is a delete)".into());
        }
        let p = self.properties;
        let correlation_data = match &p.correlation_data {
            Some(c) => Some(decode("properties.correlation_data", c)?),
            None => None,
        };
        Ok(RetainedMessage {
            topic: self.topic,
            payload,
            qos: self.qos,
            payload_format_indicator: p.payload_format_indicator,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data,
            user_properties: p
                .user_properties
                .into_iter()
                .map(|u| KeyValue {
                    key: u.key,
                    value: u.value,
                })
                .collect(),
            expires_at_ms: self.expires_at_ms,
            published_at_ms: self.published_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshmq_proto::tables::BannedAs;

    #[test]
    fn rows_round_trip_through_their_json() {
        let user = AuthUser {
            user_id: "u".into(),
            is_superuser: true,
            password: Some(PasswordHash {
                name: "scram_sha256".into(),
                scram_stored_key: Bytes::from_static(&[1, 2, 3]),
                scram_server_key: Bytes::from_static(&[4, 5]),
                scram_salt: Bytes::from_static(&[6]),
                scram_iterations: 4096,
                ..Default::default()
            }),
        };
        let json = serde_json::to_string(&UserJson::from_row(&user)).expect("json");
        let back: UserJson = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.to_row().expect("row"), user);

        let msg = RetainedMessage {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"\x00\xffhello"),
            qos: 1,
            correlation_data: Some(Bytes::from_static(b"\x01")),
            user_properties: vec![
                KeyValue {
                    key: "k".into(),
                    value: "1".into(),
                },
                KeyValue {
                    key: "k".into(),
                    value: "2".into(),
                },
            ],
            expires_at_ms: Some(9),
            published_at_ms: 7,
            ..Default::default()
        };
        let json = serde_json::to_string(&RetainedJson::from_row(&msg)).expect("json");
        let back: RetainedJson = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.to_row().expect("row"), msg);

        let ban = BannedRow {
            kind: BannedAs::Peerhost as i32,
            who: "10.0.0.1".into(),
            by: "me".into(),
            reason: "r".into(),
            at: 1_700_000_000,
            until: 0,
        };
        let json = serde_json::to_string(&BannedJson::from_row(&ban)).expect("json");
        let back: BannedJson = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.to_row().expect("row"), ban);
    }

    #[test]
    fn bad_fields_are_named_without_their_value() {
        let r: RetainedJson =
            serde_json::from_str(r#"{"topic":"t","payload":"s3cr3t!!","qos":0}"#).expect("parse");
        let e = r.to_row().expect_err("not base64");
        assert!(e.contains("payload") && !e.contains("s3cr3t"), "{e}");
        let a = AuthzJson {
            kind: "group".into(),
            key: String::new(),
            rules: vec![],
        };
        assert!(a.to_row().expect_err("kind").contains("kind"));
    }
}
