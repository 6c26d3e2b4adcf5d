//! `${name}` placeholders in authenticator settings (`verify_claims`, an HTTP body) and in
//! the HTTP authorization source's body (its own names, `crate::authz::http`), replaced by
//! what the CONNECT presented and the client certificate's names. Names were checked when
//! the configuration loaded; an unknown one here renders empty.

use super::Credentials;
use crate::listeners::CertNames;

/// `template` with each `${name}` replaced by the client's value (empty when absent).
pub(super) fn render(template: &str, creds: &Credentials<'_>) -> String {
    render_with(template, |name, out| match name {
        "clientid" => out.push_str(creds.client_id),
        "username" => out.push_str(creds.username.unwrap_or("")),
        "password" => {
            out.push_str(&String::from_utf8_lossy(creds.password.unwrap_or_default()));
        }
        "peerhost" => out.push_str(&creds.peerhost.to_canonical().to_string()),
        "cert_common_name" => out.push_str(cert_field(creds.cert, |c| &c.common_name)),
        "cert_subject" => out.push_str(cert_field(creds.cert, |c| &c.subject)),
        _ => {}
    })
}

/// A field of the client certificate's names; empty without a certificate or the field.
pub(crate) fn cert_field<'a>(
    cert: Option<&'a CertNames>,
    field: impl Fn(&'a CertNames) -> &'a Option<String>,
) -> &'a str {
    cert.and_then(|c| field(c).as_deref()).unwrap_or("")
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
            cert: None,
        };
        assert_eq!(
            render(
                "${clientid}/${username}:${password}@${peerhost}${cert_subject}!",
                &creds
            ),
            "c1/u:p w@127.0.0.1!"
        );
        assert_eq!(render("a${b", &creds), "a${b");
        let names = CertNames {
            common_name: Some("dev-1".into()),
            subject: Some("CN=dev-1,O=meshmq dev".into()),
        };
        let with_cert = Credentials {
            cert: Some(&names),
            ..creds
        };
        assert_eq!(
            render("${cert_common_name}|${cert_subject}", &with_cert),
            "dev-1|CN=dev-1,O=meshmq dev"
        );
    }
}
