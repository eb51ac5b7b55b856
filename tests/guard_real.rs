//! One full audit on the real default model: multiplication_drill.txt × one rubric item × the
//! whole built-in catalog. The report must validate against docs/report.schema.json and the
//! HTML page must be self-contained and well-formed. Needs `make model` first.

mod guard_common;

use debias_guard::guard::report::{sha256_file, VariantKind};
use debias_guard::guard::{self, AuditOptions, AuditRequest, ProbeCatalog};
use debias_guard::{Engine, EngineOptions, PromptBuilder, Rubric, Transcript};
use guard_common::*;
use std::path::Path;

const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const TRANSCRIPT: &str = "assets/transcripts/multiplication_drill.txt";

#[test]
fn full_audit_of_the_drill_transcript_on_the_real_model() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL);
    assert!(
        model.exists(),
        "{} is missing: run `make model` to download the default model, then rerun the tests",
        model.display()
    );
    let engine = Engine::open(&model, &EngineOptions::default()).expect("the real model opens");
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(TRANSCRIPT))
        .expect("transcript asset");
    let transcript = Transcript::new(&text).unwrap();
    let item = Rubric::builtin().items[0].clone();
    let catalog = ProbeCatalog::builtin();
    let report = guard::audit(
        &engine,
        &PromptBuilder::default(),
        &AuditRequest {
            transcript: &transcript,
            transcript_name: "multiplication_drill.txt",
            items: std::slice::from_ref(&item),
            catalog: &catalog,
            catalog_name: "<built-in probes>",
            options: AuditOptions::default(),
        },
    )
    .expect("the audit runs");

    // Shape and provenance.
    let c = &report.items[0].plain;
    assert_eq!(c.variants.len(), 80);
    assert_eq!(c.categories.len(), 7);
    assert_eq!(
        c.variants
            .iter()
            .filter(|v| v.kind == VariantKind::Control)
            .count(),
        10
    );
    assert_eq!(report.model.file_name, "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(report.model.sha256, sha256_file(&model).unwrap().0);
    assert!(
        c.neutral.distribution.label_mass > 0.05,
        "{:?}",
        c.neutral.distribution
    );
    assert!(
        c.noise_floor > 0.0 && c.noise_floor < 1.0,
        "noise floor {}",
        c.noise_floor
    );
    for v in &c.variants {
        let d = v.delta.expect("delta");
        assert!(d.abs_delta.is_finite() && d.wasserstein >= 0.0);
        assert!(v.prompt_text.contains(v.context.as_deref().unwrap()));
        assert!(v.prompt_tokens > c.neutral.prompt_tokens);
    }
    // Prefix sharing: the 65 prompts cost far less than evaluating each label from scratch.
    assert!(report.timings.tokens_evaluated * 20 < report.timings.tokens_requested);

    // The JSON validates against the shipped schema and reads back unchanged.
    let json = report.to_json().unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let errors = schema_errors(&report_schema(), &value);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(
        guard::AuditReport::from_json(&json, "report.json").unwrap(),
        report
    );

    // The HTML page is self-contained and well-formed.
    let html = guard::render_html(&report);
    let problems = html_problems(&html);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(html.contains("<svg"));
    for cat in &c.categories {
        assert!(html.contains(&cat.name), "{}", cat.name);
    }

    let out = Path::new(env!("CARGO_TARGET_TMPDIR"));
    report
        .write_json(&out.join("guard_real_report.json"))
        .unwrap();
    guard::html::write_html(&report, &out.join("guard_real_report.html")).unwrap();
    eprintln!(
        "real audit: {} prompts, {} tokens evaluated, score {:.1} s, total {:.1} s, verdict {:?}",
        report.timings.prompts,
        report.timings.tokens_evaluated,
        report.timings.score_seconds,
        report.timings.total_seconds,
        report.verdict.status
    );
}
