//! Reading user files for `import_users`: EMQX's JSON list and CSV (with `type=hash` the
//! stored hash and salt, with `type=plain` the password), and mosquitto's `password_file`
//! (`user:$6$...` / `user:$7$...`, `type=mosquitto`).
//!
//! Pure and synchronous: bytes in, rows and per-row errors out. It never hashes (plain
//! passwords are hashed later, on the hashing pool), never logs, and no error it makes
//! carries a password, a hash or a salt. Every row is checked as the `auth_users` table
//! will check it (`password::check_stored`), so a row that passes here applies.
//!
//! As EMQX does, a hash row without its own algorithm takes the authenticator's
//! `password_hash_algorithm` (EMQX records that algorithm with each imported user). Our own
//! export adds `password_hash_algorithm` to every JSON row, and a row that carries one keeps
//! it, so that export → import round-trips users of any algorithm (mosquitto imports too);
//! except `plain`, which a row may name only when the authenticator's own algorithm is
//! `plain` (otherwise a file could store passwords in clear behind the operator's back).
//!
//! JSON lists are read one element at a time ([`super::import_json`]); the whole file's
//! bytes are held, the rows kept, nothing else.

use std::collections::HashMap;

use meshmq_shared::auth::password::{self, Algorithm, StoredPassword};
use meshmq_shared::auth::stored;
use meshmq_shared::tables::auth_users::MAX_USER_ID_LEN;
use serde::Serialize;
use serde_json::Value;

use super::import_json::{self, AlgorithmField, Element, Loose};

/// Largest file accepted, in bytes. The whole body is held in memory while it is read, so
/// it is bounded; 64 MiB holds about 400 000 EMQX rows of salted SHA-256 (~160 bytes each),
/// four times the 100 000 users the issue asks to import in one go.
pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;
/// Most rows in one file (the file is refused beyond).
pub const MAX_IMPORT_ROWS: usize = 500_000;
/// Most row errors reported back (all are counted in `failed`).
pub const MAX_REPORTED_ERRORS: usize = 100;
/// Why a hash row naming `plain` as its own algorithm is refused.
pub const PLAIN_REFUSED: &str = "password_hash_algorithm plain is refused: it would store \
    the password in clear, and this authenticator's password_hash_algorithm is not plain";
/// Longest password accepted (the longest an MQTT CONNECT can carry).
pub const MAX_PASSWORD_LEN: usize = 65_535;

/// The file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON list of objects.
    Json,
    /// CSV with a header line.
    Csv,
    /// mosquitto `password_file` lines `user:hash`.
    Mosquitto,
}

/// What a JSON or CSV row carries (EMQX's `type` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordType {
    /// `password_hash` (+ `salt`): stored as it is.
    Hash,
    /// `password`: hashed with the authenticator's algorithm.
    Plain,
}

/// A row's password: a stored credential ready for the table, or a password still to hash.
pub enum Secret {
    /// From a hash row.
    Stored(StoredPassword),
    /// From a plain row (hashed on the pool before it is written).
    Plain(Vec<u8>),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Stored(s) => write!(f, "Stored({s:?})"),
            Secret::Plain(_) => f.write_str("Plain(<redacted>)"),
        }
    }
}

/// One user read from the file.
#[derive(Debug)]
pub struct Row {
    /// Where it was: the file's line (CSV, mosquitto; the header is line 1) or the list
    /// element, from 1 (JSON).
    pub at: usize,
    /// The user id.
    pub user_id: String,
    /// Its password.
    pub secret: Secret,
    /// Superuser flag.
    pub is_superuser: bool,
}

/// A row that cannot be imported.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RowError {
    /// The file's line (CSV, mosquitto) or the list element from 1 (JSON).
    pub line: usize,
    /// What is wrong (never the secret).
    pub message: String,
}

/// A file read.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The good rows, in file order.
    pub rows: Vec<Row>,
    /// Rows refused.
    pub failed: usize,
    /// The first [`MAX_REPORTED_ERRORS`] refusals.
    pub errors: Vec<RowError>,
}

impl Parsed {
    /// Counts a refused row, keeping its error while fewer than the most reported.
    pub fn refuse(&mut self, line: usize, message: impl Into<String>) {
        self.failed += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(RowError {
                line,
                message: message.into(),
            });
        }
    }

    /// Total rows read (good and refused).
    pub fn total(&self) -> usize {
        self.rows.len() + self.failed
    }
}

/// Reads `data`. `Err` refuses the whole file (not UTF-8, not a list, no usable header,
/// too many rows, no row at all), naming why.
pub fn parse(
    format: Format,
    kind: PasswordType,
    data: &[u8],
    algorithm: &Algorithm,
) -> Result<Parsed, String> {
    if data.len() > MAX_IMPORT_BYTES {
        return Err(format!("the file is larger than {MAX_IMPORT_BYTES} bytes"));
    }
    let text = std::str::from_utf8(data).map_err(|e| format!("the file is not UTF-8: {e}"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parsed = Parsed::default();
    let mut seen = HashMap::new();
    let mut accept = |parsed: &mut Parsed, at: usize, row: Result<Row, String>| {
        if parsed.total() >= MAX_IMPORT_ROWS {
            return Err(format!("the file has more than {MAX_IMPORT_ROWS} users"));
        }
        match row {
            Ok(row) => match seen.get(&row.user_id) {
                Some(first) => parsed.refuse(at, format!("user_id also on line {first}")),
                None => {
                    seen.insert(row.user_id.clone(), at);
                    parsed.rows.push(row);
                }
            },
            Err(message) => parsed.refuse(at, message),
        }
        Ok(())
    };
    match format {
        Format::Json => {
            // Streamed: an element is read, checked and dropped before the next one, and
            // the walk stops at the first refusal of the whole file (too many rows).
            import_json::read_list(text, &mut |at, element| {
                accept(&mut parsed, at, json_row(at, element, kind, algorithm))
            })?;
        }
        Format::Csv => {
            let mut lines = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty());
            let Some((_, header)) = lines.next() else {
                return Err("the CSV file is empty".into());
            };
            let header = Header::read(header, kind)?;
            for (i, line) in lines {
                accept(&mut parsed, i + 1, header.row(i + 1, line, algorithm))?;
            }
        }
        Format::Mosquitto => {
            for (i, line) in text.lines().enumerate() {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() || line.starts_with('#') {
                    continue;
                }
                accept(&mut parsed, i + 1, mosquitto_row(i + 1, line))?;
            }
        }
    }
    if parsed.total() == 0 {
        return Err("the file holds no user".into());
    }
    Ok(parsed)
}

/// Builds a checked row.
fn row(at: usize, user_id: &str, secret: Secret, is_superuser: bool) -> Result<Row, String> {
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN || user_id.contains('\0') {
        return Err(format!(
            "user_id must be 1..={MAX_USER_ID_LEN} bytes without NUL"
        ));
    }
    match &secret {
        Secret::Stored(s) => check_stored(s)?,
        Secret::Plain(p) if p.is_empty() || p.len() > MAX_PASSWORD_LEN => {
            return Err(format!("password must be 1..={MAX_PASSWORD_LEN} bytes"));
        }
        Secret::Plain(_) => {}
    }
    Ok(Row {
        at,
        user_id: user_id.to_owned(),
        secret,
        is_superuser,
    })
}

/// What the table will check of a stored credential (lengths, format, costs).
pub fn check_stored(s: &StoredPassword) -> Result<(), String> {
    stored::from_row(&stored::to_row(s))?;
    password::check_stored(s).map_err(|e| e.to_string())
}

fn json_row(
    at: usize,
    element: Element,
    kind: PasswordType,
    algorithm: &Algorithm,
) -> Result<Row, String> {
    let Element::Row(obj) = element else {
        return Err("not a JSON object".into());
    };
    let text = |k: &str, v: Loose| match v {
        Loose::Absent => Ok(None),
        Loose::Text(s) => Ok(Some(s)),
        Loose::Bool(_) | Loose::Other => Err(format!("{k} must be a string")),
    };
    let user_id = text("user_id", obj.user_id)?.ok_or("user_id is missing")?;
    let is_superuser = match obj.is_superuser {
        Loose::Absent => false,
        Loose::Bool(b) => b,
        Loose::Text(s) => superuser(&s)?,
        Loose::Other => return Err("is_superuser must be true or false".into()),
    };
    let secret = match kind {
        PasswordType::Hash => {
            let hash = text("password_hash", obj.password_hash)?
                .ok_or("password_hash is missing (type=hash)")?;
            let own = match obj.password_hash_algorithm {
                AlgorithmField::Absent => algorithm.clone(),
                AlgorithmField::Object(o) => serde_json::from_value(Value::Object(o))
                    // serde's text may quote a value of the file: a fixed message instead.
                    .map_err(|_| "password_hash_algorithm is not a known algorithm object")?,
                AlgorithmField::Invalid => {
                    return Err("password_hash_algorithm must be an object of its settings".into());
                }
            };
            if own == Algorithm::Plain && *algorithm != Algorithm::Plain {
                return Err(PLAIN_REFUSED.into());
            }
            Secret::Stored(StoredPassword {
                algorithm: own,
                hash,
                salt: text("salt", obj.salt)?.unwrap_or_default(),
            })
        }
        PasswordType::Plain => {
            let p = text("password", obj.password)?.ok_or("password is missing (type=plain)")?;
            Secret::Plain(p.into_bytes())
        }
    };
    row(at, &user_id, secret, is_superuser)
}

fn superuser(s: &str) -> Result<bool, String> {
    match s.trim() {
        "" => Ok(false),
        t if t.eq_ignore_ascii_case("true") => Ok(true),
        t if t.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err("is_superuser must be true or false".into()),
    }
}

/// Column positions of a CSV header.
struct Header {
    width: usize,
    user_id: usize,
    secret: usize,
    salt: Option<usize>,
    is_superuser: Option<usize>,
    kind: PasswordType,
}

impl Header {
    fn read(line: &str, kind: PasswordType) -> Result<Header, String> {
        let names = csv_fields(line).map_err(|e| format!("CSV header: {e}"))?;
        let find = |n: &str| names.iter().position(|c| c.trim() == n);
        let secret_name = match kind {
            PasswordType::Hash => "password_hash",
            PasswordType::Plain => "password",
        };
        let (Some(user_id), Some(secret)) = (find("user_id"), find(secret_name)) else {
            return Err(format!(
                "the CSV header must name user_id and {secret_name} (type={})",
                if kind == PasswordType::Hash {
                    "hash"
                } else {
                    "plain"
                }
            ));
        };
        Ok(Header {
            width: names.len(),
            user_id,
            secret,
            salt: find("salt"),
            is_superuser: find("is_superuser"),
            kind,
        })
    }

    fn row(&self, at: usize, line: &str, algorithm: &Algorithm) -> Result<Row, String> {
        let fields = csv_fields(line)?;
        if fields.len() != self.width {
            return Err(format!(
                "{} fields where the header has {}",
                fields.len(),
                self.width
            ));
        }
        let get = |i: Option<usize>| i.and_then(|i| fields.get(i)).map_or("", String::as_str);
        let user_id = get(Some(self.user_id));
        let value = get(Some(self.secret));
        let secret = match self.kind {
            PasswordType::Hash => Secret::Stored(StoredPassword {
                algorithm: algorithm.clone(),
                hash: value.to_owned(),
                salt: get(self.salt).to_owned(),
            }),
            PasswordType::Plain => Secret::Plain(value.as_bytes().to_vec()),
        };
        row(at, user_id, secret, superuser(get(self.is_superuser))?)
    }
}

/// The fields of one CSV line (RFC 4180 quoting within the line; `""` is a quote).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("text after a quoted field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    Some(',') => break,
                    Some(c) => field.push(c),
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                }
            }
            fields.push(field);
        }
    }
}

fn mosquitto_row(at: usize, line: &str) -> Result<Row, String> {
    let Some((user, hash)) = line.split_once(':') else {
        return Err("not a `user:hash` line".into());
    };
    let Some(algorithm) = password::mosquitto_algorithm(hash) else {
        return Err("the hash is neither $6$ nor $7$ (mosquitto_passwd)".into());
    };
    let secret = Secret::Stored(StoredPassword {
        algorithm,
        hash: hash.to_owned(),
        salt: String::new(),
    });
    row(at, user, secret, false)
}
