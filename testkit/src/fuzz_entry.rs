//! The entry functions of the fuzz targets (`fuzz/`), shared with the corpus replay test
//! (`tests/fuzz_corpus.rs`), so a crash found by fuzzing replays on stable through exactly the
//! same calls. Each takes the raw input bytes and returns `Ok` or the library's typed error;
//! anything else (a panic, a hang, a huge allocation) is a finding.
//!
//! Inputs that are several files (a Hugging Face directory, a PEFT adapter, the JSON files) are
//! [bundles](parse_bundle): entries `@@ NAME\n` followed by the file's bytes, written into a
//! scratch folder before the library opens it by path, as a user's files would be.

use crate::{scratch_root, SAMPLE_TRANSCRIPT, SHORT_TRANSCRIPT};
use debias_guard::adapter::{validated_modules, PeftAdapter};
use debias_guard::chat::{output_limit, ChatMessage, ChatTemplate};
use debias_guard::model::ModelConfig;
use debias_guard::{
    Engine, EngineOptions, Error, ProbeCatalog, PromptBuilder, PromptLayout, Result, Rubric,
    SplitSelection, Transcript,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Context length the chat-template target budgets its output for (256 B per token: 1 MiB).
pub const TEMPLATE_CONTEXT: usize = 4096;

/// One fuzz target: its name is the `fuzz/fuzz_targets/<name>.rs` file and the
/// `tests/corpus/<name>/` folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A GGUF file opened as a model: parser, config, tokenizer, weights (finite checks), chat
    /// template, one rendered prompt.
    GgufModel,
    /// A Hugging Face directory bundle (`config.json`, safetensors shards, index, tokenizer)
    /// opened as a model.
    HfDir,
    /// A PEFT adapter bundle (`adapter_config.json`, `adapter_model.safetensors`) validated
    /// against the tiny base model.
    PeftAdapter,
    /// A bundle of `rubric.json`, `probes.json` and `layout.json` (any of them), each parsed and
    /// used to build prompts.
    JsonFiles,
    /// A chat template source, compiled and rendered under the library's budgets.
    ChatTemplate,
}

impl Target {
    /// Every target, in the order `make fuzz` runs them.
    pub const ALL: [Target; 5] = [
        Target::GgufModel,
        Target::HfDir,
        Target::PeftAdapter,
        Target::JsonFiles,
        Target::ChatTemplate,
    ];

    /// The target's name (`gguf_model`, `hf_dir`, …).
    pub fn name(self) -> &'static str {
        match self {
            Target::GgufModel => "gguf_model",
            Target::HfDir => "hf_dir",
            Target::PeftAdapter => "peft_adapter",
            Target::JsonFiles => "json_files",
            Target::ChatTemplate => "chat_template",
        }
    }

    /// Runs the target's entry function on one input.
    pub fn run(self, data: &[u8]) -> Result<()> {
        match self {
            Target::GgufModel => gguf_model(data),
            Target::HfDir => hf_dir(data),
            Target::PeftAdapter => peft_adapter(data),
            Target::JsonFiles => json_files(data),
            Target::ChatTemplate => chat_template(data),
        }
    }
}

/// A fresh, empty scratch folder for one call of `target` (with an empty `inner/`), removed
/// again when dropped, so concurrent calls never share files and a long fuzzing run leaves
/// nothing behind.
struct CallDir(PathBuf);

impl CallDir {
    fn new(target: Target) -> Result<Self> {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let dir = scratch_root().join(format!("fuzz-{}-{n}", target.name()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("inner")).map_err(|e| Error::io(&dir, e))?;
        Ok(Self(dir))
    }
}

impl Drop for CallDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Engine options of the model targets: one worker thread, everything else the default.
fn options() -> EngineOptions {
    EngineOptions {
        threads: 1,
        ..EngineOptions::default()
    }
}

/// Opens `path` as a model and renders one rubric prompt with its chat template.
fn open_and_render(path: &Path) -> Result<()> {
    let engine = Engine::open(path, &options())?;
    let transcript = Transcript::new(SHORT_TRANSCRIPT)?;
    let rubric = Rubric::builtin();
    let prompt = PromptBuilder::default().build(&transcript, &rubric.items[0], None, false)?;
    engine.render(&prompt)?;
    Ok(())
}

/// GGUF bytes → `Engine::open` (header, metadata, tensor table and layout, config, tokenizer,
/// every tensor loaded and checked finite, chat template) → one rendered prompt.
pub fn gguf_model(data: &[u8]) -> Result<()> {
    let dir = CallDir::new(Target::GgufModel)?;
    let path = dir.0.join("model.gguf");
    std::fs::write(&path, data).map_err(|e| Error::io(&path, e))?;
    open_and_render(&path)
}

/// A Hugging Face directory bundle → `Engine::open` of the folder → one rendered prompt.
pub fn hf_dir(data: &[u8]) -> Result<()> {
    let dir = CallDir::new(Target::HfDir)?;
    write_bundle(&dir.0, data)?;
    open_and_render(&dir.0.join("inner"))
}

/// The configuration of the tiny base model (`TinySpec::default()`) adapters are checked
/// against, built once per process.
pub fn tiny_base_config() -> &'static ModelConfig {
    static CONFIG: OnceLock<ModelConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let path = crate::tiny_model("fuzz-base", &crate::TinySpec::default());
        let file = debias_guard::gguf::GgufFile::open(path).expect("tiny base model");
        ModelConfig::from_gguf(&file).expect("tiny base config")
    })
}

/// A PEFT adapter bundle → `PeftAdapter::load` → validation against the tiny base (modules,
/// ranks, shapes, finite values, update bound) → every module's dense update.
pub fn peft_adapter(data: &[u8]) -> Result<()> {
    let config = tiny_base_config();
    let dir = CallDir::new(Target::PeftAdapter)?;
    write_bundle(&dir.0, data)?;
    let adapter = PeftAdapter::load(dir.0.join("inner"))?;
    for module in validated_modules("fuzz", &adapter, config)? {
        std::hint::black_box(module.delta());
    }
    Ok(())
}

/// A bundle of `rubric.json`, `probes.json`, `layout.json` (each optional) → each loaded by
/// path as the CLI does, then prompts built from it (every rubric item with the default
/// layout; every probe's context; the layout with the built-in rubric), each user turn bounded
/// as an engine on a [`TEMPLATE_CONTEXT`]-token model bounds it. The first error is
/// returned after all present files were tried.
pub fn json_files(data: &[u8]) -> Result<()> {
    let dir = CallDir::new(Target::JsonFiles)?;
    write_bundle(&dir.0, data)?;
    let inner = dir.0.join("inner");
    let transcript = Transcript::new(SAMPLE_TRANSCRIPT)?;
    // The user turn's limit for a TEMPLATE_CONTEXT-token model, as an engine passes it.
    let max_bytes = output_limit(TEMPLATE_CONTEXT);
    let mut results = Vec::new();
    let rubric_path = inner.join("rubric.json");
    if rubric_path.exists() {
        results.push(Rubric::load(&rubric_path).and_then(|rubric| {
            let builder = PromptBuilder::default();
            for item in &rubric.items {
                builder.build_within(
                    &transcript,
                    item,
                    Some("The teacher is new."),
                    true,
                    max_bytes,
                )?;
            }
            Ok(())
        }));
    }
    let probes_path = inner.join("probes.json");
    if probes_path.exists() {
        results.push(ProbeCatalog::load(&probes_path).and_then(|catalog| {
            let builder = PromptBuilder::default();
            let item = &Rubric::builtin().items[0];
            for probe in catalog.probes(SplitSelection::All) {
                builder.build_within(&transcript, item, Some(&probe.text), false, max_bytes)?;
            }
            Ok(())
        }));
    }
    let layout_path = inner.join("layout.json");
    if layout_path.exists() {
        results.push(
            PromptLayout::load(&layout_path)
                .and_then(PromptBuilder::new)
                .and_then(|builder| {
                    for item in &Rubric::builtin().items {
                        builder.build_within(
                            &transcript,
                            item,
                            Some("The teacher is new."),
                            true,
                            max_bytes,
                        )?;
                    }
                    Ok(())
                }),
        );
    }
    if results.is_empty() {
        return Err(Error::InvalidInput("the bundle holds no JSON file".into()));
    }
    results.into_iter().collect()
}

/// A chat template source → `ChatTemplate::new` with the budget of a
/// [`TEMPLATE_CONTEXT`]-token model → one rendered conversation (system, user, assistant).
pub fn chat_template(data: &[u8]) -> Result<()> {
    let source = std::str::from_utf8(data)
        .map_err(|e| Error::ChatTemplate(format!("template is not UTF-8: {e}")))?;
    let template = ChatTemplate::new(Some(source), "<s>", "</s>")?
        .with_budget("fuzzed chat template", TEMPLATE_CONTEXT);
    let messages = [
        ChatMessage::new("system", "You rate lessons."),
        ChatMessage::new("user", SHORT_TRANSCRIPT),
        ChatMessage::new("assistant", "Rating: 3"),
    ];
    template.render(&messages, true)?;
    Ok(())
}

/// Marks the start of a bundle entry; the entry's name follows up to the end of the line.
pub const BUNDLE_MARK: &[u8] = b"@@ ";

/// Marks an entry whose content is a symbolic link: the rest of the content is its target.
pub const LINK_MARK: &[u8] = b"@link ";

/// Splits a bundle into `(name, content)` entries. An entry starts at `@@ NAME\n` at the start
/// of the input or of a line; its content runs to the newline before the next entry (or to
/// the end). Bytes before the first entry are ignored.
pub fn parse_bundle(data: &[u8]) -> Vec<(String, &[u8])> {
    let mut starts = Vec::new();
    for i in 0..data.len() {
        if data[i..].starts_with(BUNDLE_MARK) && (i == 0 || data[i - 1] == b'\n') {
            starts.push(i);
        }
    }
    let mut entries = Vec::new();
    for (k, &start) in starts.iter().enumerate() {
        let end = match starts.get(k + 1) {
            Some(&next) => next - 1,
            None => data.len(),
        };
        let head = &data[start + BUNDLE_MARK.len()..end];
        let (name, content) = match head.iter().position(|&b| b == b'\n') {
            Some(nl) => (&head[..nl], &head[nl + 1..]),
            None => (head, &head[head.len()..]),
        };
        entries.push((String::from_utf8_lossy(name).into_owned(), content));
    }
    entries
}

/// Joins `(name, content)` entries into a bundle ([`parse_bundle`] gives them back).
pub fn make_bundle(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, (name, content)) in entries.iter().enumerate() {
        if k > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(BUNDLE_MARK);
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(content);
    }
    out
}

/// Whether `name` is a plain file name (letters, digits, `.`, `_`, `-`; not `.` or `..`),
/// optionally after one `../` (the folder around the model folder).
fn bundle_name_ok(name: &str) -> bool {
    let base = name.strip_prefix("../").unwrap_or(name);
    !base.is_empty()
        && base != "."
        && base != ".."
        && base
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Writes the entries of a bundle into `root/inner/` (names with `../` into `root/`); an
/// entry `@link TARGET` becomes a symbolic link. Names and link targets are plain file names
/// (see [`bundle_name_ok`]), so nothing is written or linked outside `root`.
fn write_bundle(root: &Path, data: &[u8]) -> Result<()> {
    let inner = root.join("inner");
    for (name, content) in parse_bundle(data) {
        if !bundle_name_ok(&name) {
            return Err(Error::InvalidInput(format!("bundle entry name `{name}`")));
        }
        let path = inner.join(&name);
        if let Some(target) = content.strip_prefix(LINK_MARK) {
            let target = String::from_utf8_lossy(target).trim().to_string();
            if !bundle_name_ok(&target) {
                return Err(Error::InvalidInput(format!(
                    "bundle link target `{target}`"
                )));
            }
            let _ = std::fs::remove_file(&path);
            std::os::unix::fs::symlink(&target, &path).map_err(|e| Error::io(&path, e))?;
        } else {
            std::fs::write(&path, content).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_round_trip() {
        let entries: [(&str, &[u8]); 3] = [
            ("config.json", b"{\"a\": 1}\n"),
            ("empty", b""),
            ("model.safetensors", b"\x00\x01@@ not a mark\n"),
        ];
        let bundle = make_bundle(&entries);
        let parsed = parse_bundle(&bundle);
        assert_eq!(parsed.len(), 3);
        for ((name, content), (n, c)) in entries.iter().zip(&parsed) {
            assert_eq!((*name, *content), (n.as_str(), *c));
        }
    }

    #[test]
    fn bundle_names_stay_inside_the_scratch_folder() {
        for ok in ["config.json", "../outside.safetensors", "a-b_c.1"] {
            assert!(bundle_name_ok(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", "../..", "../../x", "/etc/x", "a/b", "x y", "../",
        ] {
            assert!(!bundle_name_ok(bad), "{bad}");
        }
    }
}
