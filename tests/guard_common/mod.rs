//! Helpers shared by the guard tests: the default tiny model on one thread, a small JSON Schema
//! checker and an HTML well-formedness checker.
#![allow(dead_code)]

use debias_guard::Engine;
use debias_guard_testkit::{open_engine, tiny_model, TinySpec};
use serde_json::Value;

/// The default tiny model opened with one thread.
pub fn tiny_engine() -> Engine {
    open_engine(&tiny_model("default", &TinySpec::default()), 1, None)
}

/// The report schema shipped in docs/.
pub fn report_schema() -> Value {
    serde_json::from_str(debias_guard::guard::REPORT_SCHEMA_JSON).expect("schema is JSON")
}

/// Checks `value` against a JSON Schema, supporting the keywords the report schema uses; an
/// unsupported keyword fails the check so the schema cannot silently outgrow the checker.
/// Returns every violation as `path: reason`.
pub fn schema_errors(schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(schema, schema, value, "$", &mut errors);
    errors
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/$defs/").expect("only local $defs refs");
            &root["$defs"][name]
        }
        None => schema,
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("unsupported type {other}"),
    }
}

fn check(root: &Value, schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    let schema = resolve(root, schema);
    let obj = schema.as_object().expect("schema is an object");
    for key in obj.keys() {
        assert!(
            [
                "$schema",
                "$id",
                "$defs",
                "$ref",
                "title",
                "description",
                "type",
                "const",
                "enum",
                "required",
                "properties",
                "additionalProperties",
                "items",
                "minItems",
                "minimum",
                "maximum",
                "pattern",
                "oneOf",
            ]
            .contains(&key.as_str()),
            "schema keyword `{key}` is not supported by the test checker"
        );
    }
    if let Some(t) = schema.get("type") {
        let ok = match t {
            Value::String(s) => type_ok(s, v),
            Value::Array(ts) => ts.iter().any(|t| type_ok(t.as_str().unwrap(), v)),
            _ => panic!("bad type keyword"),
        };
        if !ok {
            errors.push(format!("{path}: expected type {t}, got {v}"));
            return;
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            errors.push(format!("{path}: expected {c}, got {v}"));
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.contains(v) {
            errors.push(format!("{path}: {v} is not one of {options:?}"));
        }
    }
    if let Some(Value::Array(options)) = schema.get("oneOf") {
        let passing = options
            .iter()
            .filter(|o| {
                let mut e = Vec::new();
                check(root, o, v, path, &mut e);
                e.is_empty()
            })
            .count();
        if passing != 1 {
            errors.push(format!("{path}: {passing} oneOf branches match"));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                errors.push(format!("{path}: {n} < minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                errors.push(format!("{path}: {n} > maximum {max}"));
            }
        }
    }
    if let (Some(p), Some(s)) = (schema.get("pattern").and_then(Value::as_str), v.as_str()) {
        assert_eq!(p, "^[0-9a-f]{64}$", "unsupported pattern");
        if !(s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            errors.push(format!("{path}: `{s}` does not match {p}"));
        }
    }
    if let Some(map) = v.as_object() {
        if let Some(Value::Array(req)) = schema.get("required") {
            for r in req {
                let r = r.as_str().unwrap();
                if !map.contains_key(r) {
                    errors.push(format!("{path}: missing required key `{r}`"));
                }
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, child) in map {
            let child_path = format!("{path}.{k}");
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(root, s, child, &child_path, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{path}: key `{k}` is not in the schema"))
                    }
                    Some(s @ Value::Object(_)) => check(root, s, child, &child_path, errors),
                    _ => {}
                },
            }
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                errors.push(format!("{path}: fewer than {min} items"));
            }
        }
        if let Some(s) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(root, s, item, &format!("{path}[{i}]"), errors);
            }
        }
    }
}

/// Checks that an HTML page is self-contained (no URLs, scripts or external resources) and
/// well-formed (every element closed in order, entities terminated). Returns the problems.
pub fn html_problems(html: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for bad in [
        "http://", "https://", "<script", "<link", "<iframe", "url(", "@import", "src=",
    ] {
        if html.contains(bad) {
            problems.push(format!("contains `{bad}`"));
        }
    }
    if !html.starts_with("<!DOCTYPE html>") {
        problems.push("does not start with <!DOCTYPE html>".into());
    }
    const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "link"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(open) = rest.find(['<', '&']) {
        let tail = &rest[open..];
        if let Some(after) = tail.strip_prefix('&') {
            let ok = after.find(';').filter(|&e| e < 10).is_some_and(|e| {
                let name = &after[..e];
                let numeric = name
                    .strip_prefix('#')
                    .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
                numeric || (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()))
            });
            if !ok {
                let near: String = tail.chars().take(20).collect();
                problems.push(format!("bare `&` near `{near}`"));
            }
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix("<!--") {
            match after.find("-->") {
                Some(e) => rest = &after[e + 3..],
                None => {
                    problems.push("unterminated comment".into());
                    break;
                }
            }
            continue;
        }
        let Some(close) = tail.find('>') else {
            problems.push("unterminated tag".into());
            break;
        };
        let tag = &tail[1..close];
        rest = &tail[close + 1..];
        if tag.starts_with('!') {
            continue;
        }
        if tag.contains('<') {
            problems.push(format!("`<` inside tag `{tag}`"));
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name.trim() => {}
                other => problems.push(format!("`</{name}>` closes {other:?}")),
            }
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() {
            problems.push(format!("bad tag `<{tag}>`"));
            continue;
        }
        if !tag.matches('"').count().is_multiple_of(2) {
            problems.push(format!("unbalanced quotes in `<{tag}>`"));
        }
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        if name == "style" {
            match rest.find("</style>") {
                Some(e) => rest = &rest[e + "</style>".len()..],
                None => problems.push("unterminated <style>".into()),
            }
            continue;
        }
        stack.push(name);
    }
    if !stack.is_empty() {
        problems.push(format!("unclosed elements: {stack:?}"));
    }
    problems
}
