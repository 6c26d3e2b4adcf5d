//! `${name}` placeholders in authenticator settings (`verify_claims`, an HTTP body) and in
//! the HTTP authorization source's body (its own names, `crate::authz::http`),
//! replaced by what the CONNECT presented. Names were checked when the configuration
//! loaded; an unknown one here renders empty.

use super::Credentials;

/// `template` with each `${name}` replaced by the client's value (empty when absent).
pub(super) fn render(template: &str, creds: &Credentials<'_>) -> String {
    render_with(template, |name, out| match name {
        "clientid" => out.push_str(creds.client_id),
        "username" => out.push_str(creds.username.unwrap_or("")),
        "password" => {
            out.push_str(&String::from_utf8_lossy(creds.password.unwrap_or_default()));
        }
        "peerhost" => out.push_str(&creds.peerhost.to_canonical().to_string()),
        // No client certificates yet: `cert_common_name`, `cert_subject` are empty.
        _ => {}
    })
}

/// `template` with each `${name}` replaced by what `value` writes for `name` (an unclosed
/// `${` is kept as written).
pub(crate) fn render_with(template: &str, value: impl Fn(&str, &mut String)) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        value(&after[..end], &mut out);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced() {
        let creds = Credentials {
            client_id: "c1",
            username: Some("u"),
            password: Some(b"p w"),
            peerhost: std::net::Ipv4Addr::LOCALHOST.into(),
        };
        assert_eq!(
            render(
                "${clientid}/${username}:${password}@${peerhost}${cert_subject}!",
                &creds
            ),
            "c1/u:p w@127.0.0.1!"
        );
        assert_eq!(render("a${b", &creds), "a${b");
    }
}
