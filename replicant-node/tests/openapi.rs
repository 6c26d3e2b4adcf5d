//! The OpenAPI document (`GET /api/v5/openapi.json`) against the code and the live router,
//! on a standalone broker with an API key:
//!
//! - every route registered with a literal path in `replicant-node/src` (`.route("/...",
//!   get(..))`: a plain axum route, which no `#[utoipa::path]` describes) must be in the
//!   document with its methods: such a route fails the test until it is documented;
//! - every (path, method) of the document is asked of the live node, without the key, with
//!   `dummy` for each path parameter: the router itself must not answer (its 404 and 405
//!   have an empty body), a protected route must answer 401 `UNAUTHORIZED` (the handler
//!   checked the key) and an open one must not;
//! - every operation has a unique `operationId` and declares its path parameters;
//! - every operation except the open ones declares a 401 response and no security override;
//!   the open ones (health, status, metrics, availability check, this document) declare an
//!   empty security list;
//! - the frame: `info`, `components.schemas.Error`, the `basicAuth` and `bearerAuth`
//!   schemes applied globally.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::api_client::Api;
use replicant_node::Broker;
use serde_json::Value;

/// The API key the broker is started with.
const KEY: &str = "openapi-test-key";
/// The routes that answer without a key.
const OPEN: [&str; 5] = [
    "/health",
    "/metrics",
    "/api/v5/status",
    "/api/v5/load_rebalance/availability_check",
    "/api/v5/openapi.json",
];
/// HTTP methods as OpenAPI names them.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// Starts a standalone broker with an API key; its handle and API (without the key).
async fn start() -> (replicant_node::BrokerHandle, Api) {
    let mut config = common::test_config();
    config.listeners.api_key = Some(KEY.into());
    let broker = Broker::builder(config)
        .start()
        .await
        .expect("broker starts");
    let api = Api::new(broker.http_addr().expect("an HTTP listener"));
    (broker, api)
}

/// The document, fetched without a key (the route is open).
async fn fetch(api: &Api) -> Value {
    let (status, doc) = api.get("/api/v5/openapi.json").await;
    assert_eq!(status, 200, "GET /api/v5/openapi.json: {doc}");
    doc
}

/// Every (path, method) of the document, methods upper-case.
fn operations(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| m.to_ascii_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// The body of a call to `.route(` starting at `from` (just after the parenthesis), up to
/// its closing parenthesis.
fn call_body(text: &str, from: usize) -> &str {
    let mut depth = 1usize;
    for (i, c) in text[from..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[from..from + i];
                }
            }
            _ => {}
        }
    }
    &text[from..]
}

/// The methods a method router expression names (`get(a).post(b)`); `ANY` for `any(..)`.
fn methods_named(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for name in METHODS.iter().chain(["any"].iter()) {
        let token = format!("{name}(");
        let mut at = 0;
        while let Some(i) = expr[at..].find(&token) {
            let start = at + i;
            let before = expr[..start].chars().next_back();
            if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                found.insert(name.to_ascii_uppercase());
            }
            at = start + token.len();
        }
    }
    found
}

/// Every `.route("/literal", ...)` in the non-test code of `file`: (path, methods).
fn literal_routes(file: &str) -> Vec<(String, BTreeSet<String>)> {
    // Test modules sit at the end of a file, after `#[cfg(test)]`.
    let code = file.split("#[cfg(test)]").next().unwrap_or("");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = code[at..].find(".route(") {
        let open = at + i + ".route(".len();
        at = open;
        let line_start = code[..open].rfind('\n').map_or(0, |n| n + 1);
        if code[line_start..open].trim_start().starts_with("//") {
            continue;
        }
        let body = call_body(code, open);
        let rest = body.trim_start();
        let Some(lit) = rest.strip_prefix("\"/") else {
            continue;
        };
        let Some(end) = lit.find('"') else { continue };
        let path = format!("/{}", &lit[..end]);
        out.push((path, methods_named(&lit[end..])));
    }
    out
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// What is missing from `documented` among the literal routes of the files under `src`.
fn undocumented(src: &Path, documented: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut missing = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read source file");
        for (path, methods) in literal_routes(&text) {
            let shown = file.strip_prefix(src).unwrap_or(&file).display();
            let Some(doc_methods) = documented.get(&path) else {
                missing.push(format!("{methods:?} {path} ({shown}): not in the document"));
                continue;
            };
            let absent: Vec<&String> = methods
                .iter()
                .filter(|m| *m != "ANY" && !doc_methods.contains(*m))
                .collect();
            if !absent.is_empty() {
                missing.push(format!(
                    "{absent:?} {path} ({shown}): method not in the document"
                ));
            }
        }
    }
    missing
}

#[tokio::test]
async fn every_route_in_the_code_is_in_the_document() {
    let (broker, api) = start().await;
    let doc = fetch(&api).await;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let missing = undocumented(&src, &operations(&doc));
    assert!(
        missing.is_empty(),
        "routes registered with a plain `.route(` and no #[utoipa::path] in the document \
         (build them with OpenApiRouter + routes! and register them in \
         http/routes.rs documented()):\n{}",
        missing.join("\n")
    );
    broker.shutdown().await;
}

#[test]
fn the_scan_finds_a_plain_route_and_its_methods() {
    let code = r#"
        Router::new()
            .route("/api/v5/x", get(a).post(b))
            .route(
                "/api/v5/y/{id}",
                axum::routing::delete(c),
            )
            // .route("/api/v5/commented", get(d))
            .route(&format!("{BASE}/z"), get(e));
        #[cfg(test)]
        mod tests { fn t() { Router::new().route("/", post(f)); } }
    "#;
    let found = literal_routes(code);
    let want = |p: &str, m: &[&str]| (p.to_owned(), m.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        found,
        vec![
            want("/api/v5/x", &["GET", "POST"]),
            want("/api/v5/y/{id}", &["DELETE"]),
        ]
    );
    let mut documented = BTreeMap::new();
    documented.insert("/api/v5/x".to_owned(), BTreeSet::from(["GET".to_owned()]));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.rs"), code).unwrap();
    let missing = undocumented(dir.path(), &documented);
    assert_eq!(missing.len(), 2, "{missing:?}");
    assert!(missing[0].contains("[\"POST\"] /api/v5/x"), "{missing:?}");
    assert!(missing[1].contains("/api/v5/y/{id}"), "{missing:?}");
}

/// The `{parameters}` of `path` that `op` does not declare `in: path`.
fn undeclared_path_params<'a>(path: &'a str, op: &Value) -> impl Iterator<Item = &'a str> {
    let declared: BTreeSet<String> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .filter(move |p| !declared.contains(*p))
}

/// `path` with `dummy` for every `{parameter}`.
fn with_dummies(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str("dummy");
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn every_documented_route_is_routed_and_checks_the_key() {
    let (broker, api) = start().await;
    let doc = fetch(&api).await;
    let mut faults = Vec::new();
    let mut asked = 0;
    for (path, methods) in operations(&doc) {
        let target = with_dummies(&path);
        for method in methods {
            asked += 1;
            let body: &[u8] = if method == "GET" || method == "DELETE" {
                b""
            } else {
                b"{}"
            };
            let ct = (!body.is_empty()).then_some("application/json");
            let (status, answer) = api.raw(&method, &target, ct, body).await;
            let text = String::from_utf8_lossy(&answer);
            if (status == 404 || status == 405) && answer.is_empty() {
                faults.push(format!(
                    "{method} {path}: the router answers {status}: not routed"
                ));
                continue;
            }
            let open = OPEN.contains(&path.as_str());
            let refused = status == 401 && text.contains("\"UNAUTHORIZED\"");
            if open && status == 401 {
                faults.push(format!("{method} {path}: open, yet answers 401"));
            }
            if !open && !refused {
                faults.push(format!(
                    "{method} {path}: answers {status} without the API key, not 401 \
                     UNAUTHORIZED ({text:.200})"
                ));
            }
        }
    }
    assert!(asked > 40, "only {asked} operations in the document");
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    broker.shutdown().await;
}

#[tokio::test]
async fn protected_operations_declare_401_and_open_ones_need_no_key() {
    let (broker, api) = start().await;
    let doc = fetch(&api).await;
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    assert_eq!(doc["info"]["title"], "meshmq");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let error = &doc["components"]["schemas"]["Error"];
    let required: BTreeSet<&str> = error["required"]
        .as_array()
        .expect("Error.required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, BTreeSet::from(["code", "message"]), "{error}");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["basicAuth"]["scheme"], "basic", "{schemes}");
    assert_eq!(schemes["bearerAuth"]["scheme"], "bearer", "{schemes}");
    let global: Vec<String> = doc["security"]
        .as_array()
        .expect("global security")
        .iter()
        .flat_map(|r| r.as_object().expect("requirement").keys().cloned())
        .collect();
    assert_eq!(global, ["basicAuth", "bearerAuth"]);
    let mut faults = Vec::new();
    let mut open_seen = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let name = format!("{} {path}", method.to_ascii_uppercase());
            faults.extend(
                undeclared_path_params(path, op).map(|p| format!("{name}: {{{p}}} not in params")),
            );
            match op["operationId"].as_str() {
                Some(id) if !ids.insert(id.to_owned()) => {
                    faults.push(format!("{name}: operationId {id} used twice"));
                }
                Some(_) => {}
                None => faults.push(format!("{name}: no operationId")),
            }
            let security = op.get("security");
            if OPEN.contains(&path.as_str()) {
                open_seen.insert(path.as_str());
                if security != Some(&Value::Array(Vec::new())) {
                    faults.push(format!("{name}: open, but security is {security:?}"));
                }
                continue;
            }
            if security.is_some() {
                faults.push(format!("{name}: overrides the global security"));
            }
            if op["responses"].get("401").is_none() {
                faults.push(format!(
                    "{name}: declares no 401 (add `Denied` to its responses)"
                ));
            }
            if op
                .get("tags")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                faults.push(format!("{name}: no tag"));
            }
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    assert_eq!(
        open_seen,
        BTreeSet::from(OPEN),
        "every open route is documented"
    );
    broker.shutdown().await;
}
