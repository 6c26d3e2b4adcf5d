//! `docs/configuration.md` cannot drift from the configuration schema (`shared/src/config.rs`).
//!
//! The settings table between the two marker comments of that file is rendered here from
//! `Config`'s JSON schema (schemars: every field's TOML key, its `MESHMQ_` environment
//! variable, its type, its serde default and its `///` comment) and compared with the file:
//! a setting added, removed or renamed, a changed default or a changed doc comment fails
//! [`settings_table_matches_the_schema`] until the table is regenerated with
//! [`REGENERATE`]. Two more checks keep the page honest: every environment variable it names
//! really sets its key, and every TOML example in it (and in the README) is a valid
//! configuration.
//!
//! Owns the rendering of the table. It must never edit the file unless [`UPDATE_VAR`] is
//! set, and never render a setting it does not understand: an unknown type, a missing doc
//! comment or a missing default fails the test instead of producing a wrong row.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::{Path, PathBuf};

use meshmq_shared::config::{Config, ENV_PREFIX, ENV_SEPARATOR, Overrides, load_with_env};
use serde_json::{Value, json};

/// First line of the generated region.
const BEGIN: &str = "<!-- BEGIN GENERATED: settings table (shared/tests/config_docs.rs) -->";
/// Last line of the generated region.
const END: &str = "<!-- END GENERATED: settings table -->";
/// Set to `1` to rewrite the region instead of comparing it. Not `MESHMQ_`-prefixed: the
/// node reads every `MESHMQ_*` variable as a setting and refuses unknown ones.
const UPDATE_VAR: &str = "UPDATE_DOCS";
/// The one command that regenerates the table.
const REGENERATE: &str = "UPDATE_DOCS=1 cargo test -p meshmq-shared --test config_docs";

/// One setting, flattened out of the schema.
struct Setting {
    /// Key levels, e.g. `["mqtt", "max_packet_size"]`.
    path: Vec<String>,
    /// The field's own schema (description, default, type or `$ref`).
    schema: Value,
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

fn schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap()
}

/// Follows a `$ref` into `$defs`; any other schema is returned as is.
fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").expect("local $ref");
            &root["$defs"][name]
        }
        None => s,
    }
}

/// The properties of an object schema, sorted by key (serde_json's map order depends on
/// its features, which another crate of the workspace may switch on).
fn properties(s: &Value) -> Vec<(&String, &Value)> {
    let mut props: Vec<_> = s["properties"]
        .as_object()
        .expect("an object")
        .iter()
        .collect();
    props.sort_by(|a, b| a.0.cmp(b.0));
    props
}

/// True for a top-level list of tables (`[[authentication]]`): set in the file only.
fn is_list_section(root: &Value, field: &Value) -> bool {
    resolve(root, field)["type"] == "array" && field.get("items").is_some()
}

/// The generated table of a list section: per variant (its tag value), each key with its
/// type (`table` for a nested table) and description.
fn render_list(root: &Value, section: &str, field: &Value) -> String {
    let mut out = format!(
        "\n### `[[{section}]]`\n\n{} Set in the file only (no environment variables).\n\n",
        description(field, section)
    );
    out.push_str("| variant | key | type | description |\n|---|---|---|---|\n");
    let items = resolve(root, &field["items"]);
    let variants = items["oneOf"]
        .as_array()
        .or_else(|| items["anyOf"].as_array())
        .expect("a list of tagged variants");
    for v in variants {
        let v = resolve(root, v);
        // The tag keys: those with a single possible value (`mechanism`, `backend`).
        let mut tags: Vec<(String, String)> = properties(v)
            .into_iter()
            .filter_map(|(k, f)| single_value(resolve(root, f)).map(|c| (k.clone(), c)))
            .collect();
        // EMQX's order: `mechanism`, then `backend`.
        tags.sort_by_key(|(k, _)| k != "mechanism");
        assert!(!tags.is_empty(), "a tag");
        let label = tags
            .iter()
            .map(|(k, c)| format!("`{k} = \"{c}\"`"))
            .collect::<Vec<_>>()
            .join(", ");
        for (key, f) in properties(v) {
            if tags.iter().any(|(k, _)| k == key) {
                continue;
            }
            let target = resolve(root, f);
            let type_text = if target.get("oneOf").is_some_and(|o| {
                o.as_array()
                    .is_some_and(|vs| vs.iter().any(|v| v.get("properties").is_some()))
            }) {
                "table".to_owned()
            } else {
                type_name(root, f, key)
            };
            let mut desc = description(f, key);
            if let Some(vs) = variants_of(target) {
                for (val, doc) in vs {
                    desc.push_str(&format!("<br>`{val}`: {doc}"));
                }
            }
            out.push_str(&format!("| {label} | `{key}` | {type_text} | {desc} |\n"));
        }
    }
    out
}

/// The one value a schema allows (`const`, or an `enum` / `oneOf` of one), if so.
fn single_value(s: &Value) -> Option<String> {
    if let Some(c) = s.get("const").and_then(Value::as_str) {
        return Some(c.to_owned());
    }
    if let Some([one]) = s.get("enum").and_then(Value::as_array).map(Vec::as_slice) {
        return one.as_str().map(str::to_owned);
    }
    match variants(s)?.as_slice() {
        [(one, _)] => Some(one.clone()),
        _ => None,
    }
}

/// Like [`variants`], also for a schema without `oneOf`.
fn variants_of(s: &Value) -> Option<Vec<(String, String)>> {
    variants(s)
}

/// Every leaf setting under `s`; nested objects (sections) become dotted keys. List
/// sections are left out (they have no environment variables).
fn flatten(root: &Value, s: &Value, path: &[String], out: &mut Vec<Setting>) {
    for (key, field) in properties(s) {
        if path.is_empty() && is_list_section(root, field) {
            continue;
        }
        let mut p = path.to_vec();
        p.push(key.clone());
        let target = resolve(root, field);
        if let Some(table) = table_of(root, target) {
            flatten(root, table, &p, out);
        } else if let Some(item) = named_tables(root, target) {
            // `listeners.tcp.<name>`: the keys of one named table, listed once per kind.
            p.push("<name>".to_owned());
            flatten(root, item, &p, out);
        } else {
            out.push(Setting {
                path: p,
                schema: field.clone(),
            });
        }
    }
}

/// The object schema of a section, also behind `Option` (`anyOf` with `null`).
fn table_of<'a>(root: &'a Value, s: &'a Value) -> Option<&'a Value> {
    if s.get("properties").is_some() {
        return Some(s);
    }
    let any = s.get("anyOf")?.as_array()?;
    let mut tables = any
        .iter()
        .map(|v| resolve(root, v))
        .filter(|v| v.get("properties").is_some());
    let one = tables.next()?;
    tables.next().is_none().then_some(one)
}

/// The schema of the values of a map of tables keyed by name (`BTreeMap<String, T>`).
fn named_tables<'a>(root: &'a Value, s: &'a Value) -> Option<&'a Value> {
    let item = resolve(root, s.get("additionalProperties")?);
    item.get("properties").is_some().then_some(item)
}

fn env_var(path: &[String]) -> String {
    let upper: Vec<String> = path.iter().map(|k| k.to_ascii_uppercase()).collect();
    format!("{ENV_PREFIX}{}", upper.join(ENV_SEPARATOR))
}

/// A doc comment on one line, safe inside a Markdown table cell.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn description(s: &Value, key: &str) -> String {
    let d = s.get("description").and_then(Value::as_str);
    one_line(d.unwrap_or_else(|| panic!("`{key}` has no `///` doc comment in config.rs")))
}

/// The variants of a string enum: (value, doc comment).
fn variants(s: &Value) -> Option<Vec<(String, String)>> {
    let one_of = s.get("oneOf")?.as_array()?;
    one_of
        .iter()
        .map(|v| {
            let value = v.get("const")?.as_str()?.to_owned();
            let doc = v.get("description").and_then(Value::as_str).unwrap_or("");
            Some((value, one_line(doc)))
        })
        .collect()
}

fn type_name(root: &Value, s: &Value, key: &str) -> String {
    let target = resolve(root, s);
    if let Some(vs) = variants(target) {
        let names: Vec<String> = vs.iter().map(|(v, _)| format!("`{v}`")).collect();
        return format!("one of {}", names.join(", "));
    }
    let types: Vec<&str> = match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        other => panic!("`{key}`: no type in its schema ({other})"),
    };
    let optional = types.contains(&"null");
    let base: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
    let name = match base.as_slice() {
        ["boolean"] => "boolean".to_owned(),
        ["integer"] => integer_range(s),
        ["number"] => "number".to_owned(),
        ["string"] => match s.get("format").and_then(Value::as_str) {
            None => "string".to_owned(),
            Some("socket-address") => "address `ip:port`".to_owned(),
            Some(f) => panic!("`{key}`: string format {f:?} has no name here yet"),
        },
        ["array"] if s["items"]["type"] == "string" => "list of strings".to_owned(),
        ["object"] if s["additionalProperties"]["type"] == "string" => {
            "table of strings".to_owned()
        }
        // A list of tables inside a section (`[[authorization.sources]]`): its entries are
        // described in the feature's own docs page.
        ["array"] => "list of tables".to_owned(),
        other => panic!("`{key}`: type {other:?} has no name here yet"),
    };
    if optional {
        format!("{name}, optional")
    } else {
        name
    }
}

fn integer_range(s: &Value) -> String {
    let max = s.get("maximum").and_then(Value::as_u64).or_else(|| {
        match s.get("format").and_then(Value::as_str) {
            Some("uint8") => Some(u8::MAX.into()),
            Some("uint16") => Some(u16::MAX.into()),
            Some("uint32") => Some(u32::MAX.into()),
            _ => None,
        }
    });
    match (s.get("minimum").and_then(Value::as_u64), max) {
        (Some(lo), Some(hi)) => format!("integer {lo}–{hi}"),
        (Some(lo), None) => format!("integer ≥ {lo}"),
        _ => "integer".to_owned(),
    }
}

fn default_text(s: &Value, key: &str) -> String {
    match s.get("default") {
        None => panic!("`{key}` has no default (every section is `#[serde(default)]`)"),
        Some(Value::Null) => "unset".to_owned(),
        Some(v) => format!("`{v}`"),
    }
}

/// The generated region, markers included.
fn render(root: &Value) -> String {
    let mut out = format!("{BEGIN}\n");
    for (section, field) in properties(root) {
        if is_list_section(root, field) {
            out.push_str(&render_list(root, section, field));
            continue;
        }
        let target = resolve(root, field);
        let mut settings = Vec::new();
        flatten(root, target, std::slice::from_ref(section), &mut settings);
        out.push_str(&format!(
            "\n### `[{section}]`\n\n{}\n\n",
            description(field, section)
        ));
        out.push_str("| key | environment variable | type | default | description |\n");
        out.push_str("|---|---|---|---|---|\n");
        for s in &settings {
            let key = s.path.join(".");
            let mut desc = description(&s.schema, &key);
            if let Some(vs) = variants(resolve(root, &s.schema)) {
                for (v, doc) in vs {
                    desc.push_str(&format!("<br>`{v}`: {doc}"));
                }
            }
            out.push_str(&format!(
                "| `{key}` | `{}` | {} | {} | {desc} |\n",
                env_var(&s.path),
                type_name(root, &s.schema, &key),
                default_text(&s.schema, &key),
            ));
        }
    }
    out.push('\n');
    out.push_str(END);
    out
}

/// Splits `doc` into (before, region with markers, after).
fn split_region(doc: &str) -> (&str, &str, &str) {
    let start = doc
        .find(BEGIN)
        .unwrap_or_else(|| panic!("no `{BEGIN}` line"));
    let end = doc[start..]
        .find(END)
        .map(|i| start + i + END.len())
        .unwrap_or_else(|| panic!("no `{END}` line after the first marker"));
    (&doc[..start], &doc[start..end], &doc[end..])
}

#[test]
fn settings_table_matches_the_schema() {
    let path = repo_file("docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (before, current, after) = split_region(&doc);
    let expected = render(&schema());
    if current == expected {
        return;
    }
    if std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1") {
        std::fs::write(&path, format!("{before}{expected}{after}")).unwrap();
        return;
    }
    let first_diff = current
        .lines()
        .zip(expected.lines())
        .find(|(a, b)| a != b)
        .map_or_else(
            || "the tables differ in length".to_owned(),
            |(a, b)| format!("first difference:\n  in the file: {a}\n  schema says: {b}"),
        );
    panic!(
        "docs/configuration.md is out of date with shared/src/config.rs; regenerate it \
         with `{REGENERATE}` and commit the result.\n{first_diff}"
    );
}

/// Loading with only `var=value` in the environment must succeed and put `value` at `path`
/// (an unknown key is refused by `deny_unknown_fields`, so a wrong name fails here).
fn check_env(s: &Setting, root: &Value) {
    let key = s.path.join(".");
    let value = match s.schema.get("default") {
        Some(Value::Null) | None => match resolve(root, &s.schema)["type"][0].as_str() {
            Some("integer") => json!(30),
            Some("string") if s.schema.get("format").is_some() => json!("127.0.0.1:0"),
            // The static API key must be at least 16 characters.
            _ if key == "listeners.api_key" => json!("x".repeat(16)),
            _ => json!("x"),
        },
        Some(v) => v.clone(),
    };
    let raw = match &value {
        Value::String(v) => v.clone(),
        other => other.to_string(),
    };
    let env = [(env_var(&s.path), raw)];
    let config = load_with_env(None, &env, &Overrides::default())
        .unwrap_or_else(|e| panic!("`{}` does not set `{key}`: {e}", env[0].0));
    let pointer = format!("/{}", s.path.join("/"));
    let loaded = serde_json::to_value(config).unwrap();
    assert_eq!(loaded.pointer(&pointer), Some(&value), "`{}`", env[0].0);
}

#[test]
fn every_environment_variable_sets_its_key() {
    let root = schema();
    let mut settings = Vec::new();
    flatten(&root, &root, &[], &mut settings);
    assert!(
        settings.len() > 20,
        "only {} settings found",
        settings.len()
    );
    for s in &settings {
        // A named listener's keys are checked with a real name in the loader's own tests
        // (a TLS key on a tcp listener is refused, so no one name fits them all).
        if s.path.iter().any(|p| p == "<name>") {
            continue;
        }
        check_env(s, &root);
    }
}

/// The ```toml blocks of a Markdown file, dedented.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed.starts_with("```toml") => {
                current = Some((line.len() - trimmed.len(), String::new()));
            }
            Some((_, text)) if trimmed.starts_with("```") => {
                blocks.push(std::mem::take(text));
                current = None;
            }
            Some((indent, text)) => {
                text.push_str(line.get(*indent..).unwrap_or(""));
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn toml_examples_are_valid_configurations() {
    for file in [
        "docs/configuration.md",
        "docs/authentication.md",
        "README.md",
    ] {
        let markdown = std::fs::read_to_string(repo_file(file)).unwrap();
        let blocks = toml_blocks(&markdown);
        assert!(!blocks.is_empty(), "{file} has no ```toml example");
        for block in blocks {
            let config: Config = toml::from_str(&block)
                .unwrap_or_else(|e| panic!("a TOML example in {file} is not valid:\n{e}"));
            meshmq_shared::config::validate(&config)
                .unwrap_or_else(|e| panic!("a TOML example in {file}: {e}"));
        }
    }
}
