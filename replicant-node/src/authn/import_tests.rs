//! Reading user files: every format, per-row refusals with their line, whole-file
//! refusals, and the algorithm a hash row gets.

use meshmq_shared::auth::password::{self, Algorithm, SaltPosition};

use super::import::{Format, PasswordType, Secret, parse};

fn sha() -> Algorithm {
    Algorithm::Sha256 {
        salt_position: SaltPosition::Suffix,
    }
}

const H: &str = "b6c743545a7817ae8c8f624371d5f5f0373234bb0ff36b8ffbf19bce0e06ab75";

#[test]
fn csv_hash_rows_take_the_authenticators_algorithm_and_bad_rows_name_their_line() {
    let file = format!(
        "user_id,password_hash,salt,is_superuser\r\nu1,{H},s1,true\r\n\"u,2\",{H},,\nu3,nothex,s,false\nu1,{H},s,false\nu5,{H}\n"
    );
    let p = parse(Format::Csv, PasswordType::Hash, file.as_bytes(), &sha()).expect("parsed");
    assert_eq!(p.rows.len(), 2);
    assert_eq!(p.rows[1].user_id, "u,2");
    assert!(p.rows[0].is_superuser);
    let Secret::Stored(s) = &p.rows[0].secret else {
        panic!("stored")
    };
    assert_eq!(s.algorithm, sha());
    assert_eq!(s.salt, "s1");
    let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [4, 5, 6], "{:?}", p.errors);
    assert!(p.errors[1].message.contains("line 2"));
    assert_eq!(p.total(), 5);
}

#[test]
fn json_rows_may_carry_their_own_algorithm_and_plain_rows_their_password() {
    let file = r#"[{"user_id":"a","password_hash":"$6$c2FsdA==$AAAA","password_hash_algorithm":{"name":"mosquitto_sha512"}},
                  {"user_id":"b","password_hash":"ab","salt":"x","is_superuser":"true"},
                  {"user_id":7,"password_hash":"ab"},
                  "nope"]"#;
    let p = parse(Format::Json, PasswordType::Hash, file.as_bytes(), &sha()).expect("parsed");
    // a: $6$ with a digest of the wrong length is refused by check_stored.
    assert_eq!(p.rows.len(), 1);
    assert_eq!(p.rows[0].user_id, "b");
    assert_eq!(p.failed, 3);
    let plain = r#"[{"user_id":"p","password":"pw"},{"user_id":"q"}]"#;
    let p = parse(Format::Json, PasswordType::Plain, plain.as_bytes(), &sha()).expect("parsed");
    assert!(matches!(&p.rows[0].secret, Secret::Plain(pw) if pw == b"pw"));
    assert_eq!(p.errors[0].line, 2);
    assert_eq!(format!("{:?}", p.rows[0].secret), "Plain(<redacted>)");
}

#[test]
fn mosquitto_lines_keep_their_own_algorithm() {
    let six = password::hash(&Algorithm::MosquittoSha512, b"pw", [1; 16]).expect("hash");
    let seven = password::hash(&Algorithm::MosquittoPbkdf2, b"pw", [2; 16]).expect("hash");
    let file = format!(
        "# comment\nalice:{}\n\nbob:{}\ncarol:plain\nnocolon\n",
        six.hash, seven.hash
    );
    let p = parse(
        Format::Mosquitto,
        PasswordType::Hash,
        file.as_bytes(),
        &sha(),
    )
    .expect("parsed");
    assert_eq!(p.rows.len(), 2);
    let Secret::Stored(s) = &p.rows[1].secret else {
        panic!("stored")
    };
    assert_eq!(s.algorithm, Algorithm::MosquittoPbkdf2);
    let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [5, 6]);
}

#[test]
fn whole_files_refused() {
    let bad: [(Format, &[u8]); 5] = [
        (Format::Json, b"{\"user_id\":\"a\"}"),
        (Format::Json, b"[]"),
        (Format::Csv, b"user_id,salt\na,b\n"),
        (Format::Csv, b""),
        (Format::Mosquitto, b"\xff\xfe"),
    ];
    for (f, data) in bad {
        assert!(
            parse(f, PasswordType::Hash, data, &sha()).is_err(),
            "{f:?} {data:?}"
        );
    }
}

#[test]
fn reported_errors_are_bounded_but_all_counted() {
    let mut file = String::from("user_id,password_hash\n");
    for i in 0..500 {
        file.push_str(&format!("u{i},zz\n"));
    }
    let p = parse(Format::Csv, PasswordType::Hash, file.as_bytes(), &sha()).expect("parsed");
    assert_eq!(p.failed, 500);
    assert_eq!(p.errors.len(), super::import::MAX_REPORTED_ERRORS);
}

#[test]
fn a_json_list_is_read_element_by_element_and_stops_past_the_row_limit() {
    use super::import::MAX_IMPORT_ROWS;
    // Tiny elements past the limit, then text that is not JSON at all: the walk stops at
    // the limit, before it (a parser that read the whole list first would fail on the
    // text, or hold a value per element).
    let mut file = String::with_capacity(2 * MAX_IMPORT_ROWS + 16);
    file.push('[');
    for _ in 0..=MAX_IMPORT_ROWS {
        file.push_str("0,");
    }
    file.push_str("not json");
    let e = parse(Format::Json, PasswordType::Hash, file.as_bytes(), &sha()).expect_err("refused");
    assert_eq!(e, format!("the file has more than {MAX_IMPORT_ROWS} users"));
    // At the limit exactly, a well-formed list is read (every element refused: not objects).
    let at_limit = format!("[{}0]", "0,".repeat(MAX_IMPORT_ROWS - 1));
    let p = parse(
        Format::Json,
        PasswordType::Hash,
        at_limit.as_bytes(),
        &sha(),
    )
    .expect("read");
    assert_eq!((p.failed, p.rows.len()), (MAX_IMPORT_ROWS, 0));
    // Nested lists and unknown fields are skipped, not kept; a row still reads.
    let nested = r#"[[[1,[2,[3]]]], {"extra": {"deep": [1, 2, {"x": "y"}]}, "user_id": "n",
                     "password_hash": "ab", "salt": "s"}]"#;
    let p = parse(Format::Json, PasswordType::Hash, nested.as_bytes(), &sha()).expect("read");
    assert_eq!((p.failed, p.rows.len()), (1, 1));
    assert_eq!(p.errors[0].line, 1);
}

#[test]
fn a_hash_row_may_name_plain_only_under_a_plain_authenticator() {
    let file = r#"[{"user_id":"ok","password_hash":"ab","salt":"s"},
                  {"user_id":"clear","password_hash":"hunter2","password_hash_algorithm":{"name":"plain"}}]"#;
    let p = parse(Format::Json, PasswordType::Hash, file.as_bytes(), &sha()).expect("parsed");
    assert_eq!(p.rows.len(), 1);
    assert_eq!(p.rows[0].user_id, "ok");
    assert_eq!(p.errors.len(), 1);
    assert_eq!(p.errors[0].line, 2);
    assert_eq!(p.errors[0].message, super::import::PLAIN_REFUSED);
    assert!(!p.errors[0].message.contains("hunter2"));
    // The authenticator's own algorithm is plain: the row is what it asks for.
    let p = parse(
        Format::Json,
        PasswordType::Hash,
        file.as_bytes(),
        &Algorithm::Plain,
    )
    .expect("parsed");
    assert_eq!(p.rows.len(), 2, "{:?}", p.errors);
    let Secret::Stored(s) = &p.rows[1].secret else {
        panic!("stored")
    };
    assert_eq!(s.algorithm, Algorithm::Plain);
}

#[test]
fn json_row_errors_never_quote_the_file() {
    let file = r#"[{"user_id":"a","password":123456},
                  {"user_id":"b","password":["s3cr3t"]},
                  {"user_id":"c","password":"p","is_superuser":"s3cr3t"},
                  {"user_id":{"s3cr3t":1},"password":"p"}]"#;
    let p = parse(Format::Json, PasswordType::Plain, file.as_bytes(), &sha()).expect("parsed");
    let hash = r#"[{"user_id":"d","password_hash":"ab","password_hash_algorithm":{"name":"s3cr3t"}},
                  {"user_id":"e","password_hash":"ab","password_hash_algorithm":"s3cr3t"},
                  {"user_id":"f","password_hash":123456}]"#;
    let h = parse(Format::Json, PasswordType::Hash, hash.as_bytes(), &sha()).expect("parsed");
    let errors: Vec<_> = p.errors.iter().chain(&h.errors).collect();
    assert_eq!(errors.len(), 7, "{errors:?}");
    for e in errors {
        assert!(
            !e.message.contains("123456") && !e.message.contains("s3cr3t"),
            "{e:?}"
        );
    }
    assert_eq!(p.errors[0].message, "password must be a string");
    let whole = parse(Format::Json, PasswordType::Plain, br#""s3cr3t""#, &sha()).expect_err("x");
    assert!(!whole.contains("s3cr3t"), "{whole}");
}
