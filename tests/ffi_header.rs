//! The checked-in C header must equal a fresh generation from `src/ffi/` (safer-ffi's header
//! builder), and its version macros must match Cargo.toml.
//!
//! Regenerate after changing the ABI or its doc comments:
//! `DEBIAS_GUARD_WRITE_HEADER=1 cargo test --release --test ffi_header` (or `make header`).

use std::path::PathBuf;

fn header_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/debias_guard.h")
}

fn fresh() -> String {
    let mut out = Vec::new();
    debias_guard::ffi::write_header(&mut out).expect("generate the header");
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn checked_in_header_is_current() {
    let fresh = fresh();
    let path = header_path();
    if std::env::var_os("DEBIAS_GUARD_WRITE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write include/debias_guard.h");
        eprintln!("wrote {}", path.display());
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current != fresh {
        let first = current
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(fresh.lines().count()));
        panic!(
            "{} differs from a fresh generation (first difference at line {}: {:?} vs {:?}); \
             run `make header` (DEBIAS_GUARD_WRITE_HEADER=1 cargo test --release --test \
             ffi_header) and commit the result",
            path.display(),
            first + 1,
            current.lines().nth(first).unwrap_or("<end of file>"),
            fresh.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}

#[test]
fn version_macros_match_cargo_toml() {
    let header = fresh();
    for (name, value) in [
        ("DG_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("DG_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("DG_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        let line = format!("#define {name} {value}\n");
        assert!(header.contains(&line), "header lacks `{}`", line.trim());
    }
    let line = format!(
        "#define DG_VERSION_STRING \"{}\"\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(header.contains(&line), "header lacks `{}`", line.trim());
    assert_eq!(debias_guard::VERSION, env!("CARGO_PKG_VERSION"));
}

#[test]
fn every_item_is_documented_and_every_function_is_prefixed() {
    let header = fresh();
    assert!(
        !header.contains("<No documentation available>"),
        "an exported item has no doc comment"
    );
    // Every declaration at the top level of the body is a `dg_` function, type or enum value.
    for line in header.lines() {
        if let Some(rest) = line.strip_prefix("typedef struct ") {
            assert!(
                rest.starts_with("dg_"),
                "type without the dg_ prefix: {line}"
            );
        }
    }
    let functions = [
        "dg_version",
        "dg_status_text",
        "dg_error_status",
        "dg_error_message",
        "dg_error_free",
        "dg_model_default_options",
        "dg_model_open",
        "dg_model_get_info",
        "dg_model_free",
        "dg_rubric_builtin",
        "dg_rubric_load",
        "dg_rubric_parse",
        "dg_rubric_item_count",
        "dg_rubric_item_id",
        "dg_rubric_free",
        "dg_score",
        "dg_scores_free",
        "dg_bias_delta",
        "dg_bias_deltas",
        "dg_delta_batch_free",
        "dg_check_default_options",
        "dg_check",
        "dg_checks_free",
        "dg_audit_default_options",
        "dg_audit",
        "dg_audit_write_html",
        "dg_audit_free",
    ];
    for f in functions {
        assert!(
            header.contains(&format!("{f} (")),
            "function {f} is missing from the header"
        );
    }
}
