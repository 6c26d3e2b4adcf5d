//! The Grafana dashboard (`deploy/grafana/meshmq.json`) queries only metrics the nodes
//! export: every metric name in every panel's PromQL and in the template variables' queries
//! is a name from `meshmq_shared::metrics` (histograms through their `_bucket`, `_sum` and
//! `_count` series), and every panel reads the `${DS_PROMETHEUS}` data source.

use std::collections::BTreeSet;

use meshmq_shared::metrics as m;
use serde_json::Value;

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/meshmq.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every series name the nodes export.
fn exported() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = m::COUNTERS
        .iter()
        .chain(m::GAUGES)
        .chain(m::PROCESS)
        .map(|n| n.to_string())
        .collect();
    for h in m::HISTOGRAMS.iter().chain(m::COUNT_HISTOGRAMS) {
        for suffix in ["_bucket", "_sum", "_count"] {
            names.insert(format!("{h}{suffix}"));
        }
    }
    names
}

/// PromQL words that are never metric names here (aggregations may be followed by `by (...)`
/// rather than by `(`).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "group_left",
    "group_right",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];
/// PromQL words followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression reads: identifiers outside strings, label matchers
/// (`{...}`), ranges (`[...]`) and label lists (`by (...)`), that are not functions,
/// keywords, numbers or Grafana variables (`$job`, `$__rate_interval`).
fn metric_names(expr: &str) -> Vec<String> {
    let c: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_to = |i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        let mut j = i;
        while j < c.len() {
            if c[j] == open {
                depth += 1;
            } else if c[j] == close {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            } else if c[j] == '"' || c[j] == '\'' || c[j] == '`' {
                let q = c[j];
                j += 1;
                while j < c.len() && c[j] != q {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
            }
            j += 1;
        }
        panic!("unbalanced {open}{close} in {expr}");
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '{' {
            i = skip_to(i, '{', '}');
        } else if ch == '[' {
            i = skip_to(i, '[', ']');
        } else if ch == '"' || ch == '\'' || ch == '`' {
            i += 1;
            while i < c.len() && c[i] != ch {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ch == '$' {
            i += 1;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch.is_ascii_digit() || ch == '.' {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let mut j = i;
            while j < c.len() && c[j].is_whitespace() {
                j += 1;
            }
            let call = j < c.len() && c[j] == '(';
            if call && LABEL_LISTS.contains(&word.as_str()) {
                i = skip_to(j, '(', ')');
            } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                out.push(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every PromQL expression of the dashboard: panels' targets (rows' nested panels
/// included) and the metric argument of the template variables' `label_values(...)`.
fn expressions(dash: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{title}: no expr"));
                out.push((title.clone(), expr.to_string()));
            }
            walk(p["panels"].as_array().map_or(&[], |v| v), out);
        }
    }
    let mut out = Vec::new();
    walk(dash["panels"].as_array().expect("panels"), &mut out);
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"].as_str().or(v["query"].as_str());
        if let (Some(q), Some("query")) = (q, v["type"].as_str()) {
            let arg = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .unwrap_or_else(|| {
                    panic!("variable query {q}: expected label_values(metric, label)")
                });
            out.push((format!("variable {}", v["name"]), arg.0.to_string()));
        }
    }
    out
}

#[test]
fn the_extractor_finds_metric_names_only() {
    let e = r#"histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{job=~"$job",x="y{z}"}[$__rate_interval] offset 5m))) / on (instance) group_left b_total > bool 1e3 or c"#;
    assert_eq!(metric_names(e), ["a_seconds_bucket", "b_total", "c"]);
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let dash = dashboard();
    let exported = exported();
    let exprs = expressions(&dash);
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for (title, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: no metric in {expr}");
        for name in names {
            if !exported.contains(&name) {
                unknown.push(format!("{title}: {name} (in {expr})"));
            }
            used.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics no node exports:\n{}",
        unknown.join("\n")
    );
    // The panels the operators asked for are there.
    for name in [
        m::CONNECTIONS,
        m::CONNACK_TOTAL,
        m::MESSAGES_RECEIVED_TOTAL,
        m::MESSAGES_DELIVERED_TOTAL,
        m::MESSAGES_DROPPED_TOTAL,
        m::PUBLISH_BACKPRESSURE_TOTAL,
        m::LISTENER_CONNECTIONS,
        m::AUTHN_RESULTS_TOTAL,
        m::AUTHZ_DECISIONS_TOTAL,
        m::DISCONNECTS_TOTAL,
        "meshmq_message_delivery_latency_seconds_bucket",
        m::MESSAGES_QUEUED,
        m::REPLICATION_LAG_ENTRIES,
        m::RAFT_LEADER_ID,
        m::RAFT_TERM,
        m::RAFT_COMMIT_INDEX,
        "meshmq_core_transact_seconds_bucket",
        m::EVACUATING,
        m::PROCESS_RESIDENT_MEMORY_BYTES,
        m::PROCESS_CPU_SECONDS_TOTAL,
        m::PROCESS_OPEN_FDS,
    ] {
        assert!(used.contains(name), "no panel queries {name}");
    }
}

#[test]
fn every_panel_reads_the_templated_data_source() {
    let dash = dashboard();
    let inputs = dash["__inputs"].as_array().expect("__inputs");
    assert!(inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"));
    let vars = dash["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource")
    );
    let mut panels = 0;
    for p in dash["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            continue;
        }
        panels += 1;
        let title = &p["title"];
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        }
    }
    assert!(panels >= 15, "{panels} panels");
}
