//! Writes the prompts of the llama.cpp parity fixture (`tests/fixtures/parity_prompts.json`),
//! rendered by our own prompt builder and the model's chat template, so the reference script
//! scores exactly the text we score.
//!
//! Run: `cargo run --release --example parity_prompts -- [MODEL] [OUT]`

use debias_guard::{Engine, EngineOptions, PromptBuilder, Rubric, Transcript};
use serde_json::json;

fn main() -> debias_guard::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let out = args
        .next()
        .unwrap_or_else(|| "tests/fixtures/parity_prompts.json".into());
    let engine = Engine::open(&model, &EngineOptions::default())?;
    let rubric = Rubric::builtin();
    let builder = PromptBuilder::default();
    let cases = [
        ("fractions_discussion", "instructional_dialogue", None, false),
        (
            "multiplication_drill",
            "student_reasoning",
            Some("Note: the teacher in this recording has taught elementary mathematics for 26 years."),
            false,
        ),
        (
            "geometry_shapes",
            "teacher_uptake",
            Some("I am fairly sure this lesson deserves a low score."),
            true,
        ),
    ];
    let mut prompts = Vec::new();
    for (transcript, item_id, context, mitigate) in cases {
        let text = std::fs::read_to_string(format!("assets/transcripts/{transcript}.txt"))
            .map_err(|e| debias_guard::Error::io(transcript, e))?;
        let item = rubric.item(item_id).expect("item exists");
        let prompt =
            engine.rubric_prompt(&builder, &Transcript::new(&text)?, item, context, mitigate)?;
        prompts.push(json!({
            "id": format!("{transcript}/{item_id}"),
            "text": prompt.text,
            "continuations": prompt.labels.iter().map(|l| format!("{}{l}", prompt.separator)).collect::<Vec<_>>(),
            "labels": prompt.labels,
        }));
    }
    let file_name = std::path::Path::new(&model)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doc = json!({ "model": file_name, "prompts": prompts });
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&doc).expect("json") + "\n",
    )
    .map_err(|e| debias_guard::Error::io(&out, e))?;
    eprintln!("wrote {out}");
    Ok(())
}
