//! Import of a mosquitto `acl_file` into the same rules as the `[authorization]` file source.
//!
//! Owns the parsing of the format: `#` comments and blank lines; `user <name>` (the lines
//! after it are that user's; before the first `user` line they are for clients without a
//! username); `topic [read|write|readwrite|deny] <topic>` (default `readwrite`);
//! `pattern [access] <topic>` for every client, `%c` / `%u` standing for the client id and
//! username. `read` is subscribe, `write` publish, `readwrite` both, `deny` both refused.
//! As mosquitto checks denials first, the deny rules come out before the allow rules (each
//! group in file order); a request none matches gets `authorization.no_match` (set it to
//! `deny` for mosquitto's behaviour). Errors name the line (1-based).

use crate::auth::acl::{self, Action, ActionKind, Permission, Rule, Who};

/// Largest `acl_file` read (bytes).
pub const MAX_ACL_FILE_BYTES: usize = 4 * 1024 * 1024;
/// Most `topic` / `pattern` lines.
pub const MAX_ACL_LINES: usize = 10_000;

/// Parses the text of an `acl_file`.
pub fn parse(text: &str) -> Result<Vec<Rule>, String> {
    if text.len() > MAX_ACL_FILE_BYTES {
        return Err(format!("larger than {MAX_ACL_FILE_BYTES} bytes"));
    }
    let mut user: Option<String> = None;
    let (mut deny, mut allow) = (Vec::new(), Vec::new());
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", n + 1);
        let (keyword, rest) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(k, r)| (k, r.trim()));
        let who = match keyword {
            "user" => {
                if rest.is_empty() {
                    return Err(at("`user` needs a name".into()));
                }
                user = Some(rest.to_owned());
                continue;
            }
            "topic" => match &user {
                Some(u) => Who::Username(u.clone()),
                None => Who::Anonymous,
            },
            "pattern" => Who::All,
            other => {
                return Err(at(format!(
                    "unknown keyword {other:?} (expected user, topic or pattern)"
                )));
            }
        };
        let (access, topic) = split_access(rest);
        if topic.is_empty() {
            return Err(at(format!("`{keyword}` needs a topic")));
        }
        let topic = if keyword == "pattern" {
            topic
                .replace("%c", "${clientid}")
                .replace("%u", "${username}")
        } else {
            topic.to_owned()
        };
        acl::check_topic(&topic).map_err(at)?;
        let (permission, kind) = match access {
            "read" => (Permission::Allow, ActionKind::Subscribe),
            "write" => (Permission::Allow, ActionKind::Publish),
            "readwrite" => (Permission::Allow, ActionKind::All),
            _ => (Permission::Deny, ActionKind::All),
        };
        let rule = Rule {
            permission,
            who,
            action: Action::plain(kind),
            topics: vec![topic],
        };
        if deny.len() + allow.len() >= MAX_ACL_LINES {
            return Err(at(format!("more than {MAX_ACL_LINES} rules")));
        }
        match permission {
            Permission::Deny => deny.push(rule),
            Permission::Allow => allow.push(rule),
        }
    }
    deny.extend(allow);
    Ok(deny)
}

/// `(access, topic)`: the access word when the line has one and a topic after it.
fn split_access(rest: &str) -> (&str, &str) {
    if let Some((first, topic)) = rest.split_once(char::is_whitespace)
        && matches!(first, "read" | "write" | "readwrite" | "deny")
    {
        return (first, topic.trim());
    }
    ("readwrite", rest)
}
