//! The burn decoder computes what the library's candle engine computes: same logits for the same
//! weights and tokens (llama and qwen2, tied and untied heads), batched with right padding.

mod model_support;

use burn::tensor::Device;
use debias_guard_testkit::{max_abs_diff, scratch_dir, tiny_model, TinySpec};
use debias_guard_trainer::model::{
    sequence_logprobs, LoraAdapter, LoraConfig, ScoredSequence, TokenBatch,
};
use model_support::{decoder, engine, values};

/// Largest absolute logit difference accepted between burn and candle (f32 both; the tiny
/// models' logits are O(1), so this is ~1e-5 relative).
const LOGIT_TOLERANCE: f64 = 1e-4;

const TEXT: &str = "TEACHER: What is one half plus one quarter?\nSTUDENT: Three quarters, because two quarters make a half.";

fn check_parity(architecture: &str, untied: bool) {
    let dir = scratch_dir(&format!("parity-{architecture}-{untied}"));
    let path = tiny_model(
        &format!("parity-{architecture}-{untied}"),
        &TinySpec::new(architecture, untied),
    );
    let engine = engine(&path);
    let config = engine.config().clone();
    let device = Device::flex();
    let model = decoder(&path, &device);
    let tokens = engine.tokenize(TEXT).expect("tokenize");
    assert!(tokens.len() > 20, "the text should give a real sequence");
    let positions: Vec<usize> = (0..tokens.len()).collect();
    let expected: Vec<f32> = engine
        .logits(&tokens, &positions)
        .expect("candle logits")
        .concat();
    let batch = TokenBatch::whole(&tokens, &config).expect("batch");
    let got = values(model.logits(&batch, None).expect("burn logits"));
    let diff = max_abs_diff(&got, &expected);
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    eprintln!(
        "{architecture} untied={untied}: {} tokens, max |burn - candle| = {diff:.2e} (max |logit| {scale:.2})",
        tokens.len()
    );
    assert!(
        diff <= LOGIT_TOLERANCE,
        "{architecture} (untied {untied}): max |burn - candle| = {diff}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn llama_logits_match_the_library() {
    check_parity("llama", false);
}

#[test]
fn llama_untied_logits_match_the_library() {
    check_parity("llama", true);
}

#[test]
fn qwen2_logits_match_the_library() {
    check_parity("qwen2", false);
}

/// A Hugging Face model directory (llama with llama3 RoPE scaling, so the per-pair frequency
/// factors matter) gives the same logits in burn as in the library.
#[test]
fn hf_directory_with_llama3_rope_matches_the_library() {
    use debias_guard_testkit::{write_tiny_hf_model, HfModelSpec, Llama3RopeScaling};
    let dir = scratch_dir("parity-hf");
    let model_dir = dir.join("model");
    let spec = HfModelSpec {
        model: TinySpec {
            architecture: "llama".into(),
            context_length: 256,
            ..TinySpec::default()
        },
        rope_scaling: Some(Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 32,
        }),
        ..HfModelSpec::default()
    };
    write_tiny_hf_model(&model_dir, &spec).expect("write HF model");
    let engine = engine(&model_dir);
    assert!(
        engine.config().rope_freq_factors.is_some(),
        "llama3 factors are in use"
    );
    let device = Device::flex();
    let model = decoder(&model_dir, &device);
    let tokens = engine.tokenize(TEXT).expect("tokenize");
    let positions: Vec<usize> = (0..tokens.len()).collect();
    let expected = engine.logits(&tokens, &positions).unwrap().concat();
    let batch = TokenBatch::whole(&tokens, model.config()).unwrap();
    let got = values(model.logits(&batch, None).unwrap());
    let diff = max_abs_diff(&got, &expected);
    eprintln!("HF llama3-RoPE dir: max |burn - candle| = {diff:.2e}");
    assert!(diff <= LOGIT_TOLERANCE, "max |burn - candle| = {diff}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sequences of different lengths in one right-padded batch score as they do alone, and the
/// summed log-probs equal the library's logits turned into log-probs.
#[test]
fn padded_batch_scores_equal_single_sequences_and_the_library() {
    let dir = scratch_dir("padded-batch");
    let path = tiny_model("padded-batch", &TinySpec::new("qwen2", false));
    let engine = engine(&path);
    let config = engine.config().clone();
    let device = Device::flex();
    let model = decoder(&path, &device);
    let tok = engine.tokenizer();
    let seqs = vec![
        ScoredSequence::from_texts(tok, "TEACHER: Rate this.\n", "Rating: 5").unwrap(),
        ScoredSequence::from_texts(
            tok,
            "TEACHER: A much longer prompt about fractions and the lowest common denominator.\n",
            "The students explained their reasoning. Rating: 3",
        )
        .unwrap(),
    ];
    let adapter = LoraAdapter::init(&LoraConfig::default(), &config, &device).unwrap();
    let batched = sequence_logprobs(
        &model,
        &TokenBatch::new(&seqs, &config).unwrap(),
        Some(&adapter),
    )
    .unwrap();
    let sums = values(batched.sum.clone());
    let means = values(batched.mean.clone());
    for (i, seq) in seqs.iter().enumerate() {
        let alone = sequence_logprobs(
            &model,
            &TokenBatch::new(std::slice::from_ref(seq), &config).unwrap(),
            None,
        )
        .unwrap();
        let alone_sum = values(alone.sum)[0];
        assert!(
            (sums[i] - alone_sum).abs() < 1e-4,
            "sequence {i}: {} vs {alone_sum}",
            sums[i]
        );
        assert_eq!(batched.count[i], seq.response_len());
        assert!((means[i] - sums[i] / seq.response_len() as f32).abs() < 1e-5);

        // The same sum from the library's logits.
        let tokens = seq.tokens();
        let start = seq.response_start();
        let positions: Vec<usize> = (start - 1..tokens.len() - 1).collect();
        let rows = engine.logits(tokens, &positions).unwrap();
        let library: f64 = rows
            .iter()
            .zip(&tokens[start..])
            .map(|(row, &t)| {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
                let lse = max
                    + row
                        .iter()
                        .map(|&v| (v as f64 - max).exp())
                        .sum::<f64>()
                        .ln();
                row[t as usize] as f64 - lse
            })
            .sum();
        assert!(
            (sums[i] as f64 - library).abs() < 1e-3,
            "sequence {i}: burn {} vs library {library}",
            sums[i]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Packing sequences that share a prompt into one row (prefix once, one branch per response)
/// scores each exactly as one row per sequence does, with an adapter active.
#[test]
fn packed_rows_score_like_separate_rows() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let dir = scratch_dir("packed");
    let path = tiny_model("packed", &TinySpec::new("llama", false));
    let engine = engine(&path);
    let config = engine.config().clone();
    let device = Device::flex();
    let model = decoder(&path, &device);
    let tok = engine.tokenizer();
    let prompt = "TEACHER: Compare two thirds and three fifths.\nSTUDENT: Two thirds is bigger.\n";
    let seqs = [
        ScoredSequence::from_texts(tok, prompt, "The reasoning is clear. Rating: 6").unwrap(),
        ScoredSequence::from_texts(tok, prompt, "The reasoning is thin. Rating: 3").unwrap(),
        ScoredSequence::from_texts(tok, prompt, "Rating: 4").unwrap(),
        ScoredSequence::from_texts(tok, "TEACHER: Rate the dialogue.\n", "Rating: 5").unwrap(),
    ];
    let mut rng = StdRng::seed_from_u64(9);
    let lora = LoraConfig {
        rank: 4,
        ..LoraConfig::default()
    };
    let adapter = LoraAdapter::from_values(&lora, &config, &device, |_, _, (out, inp)| {
        let a = (0..4 * inp).map(|_| rng.random_range(-0.3..0.3)).collect();
        let b = (0..out * 4).map(|_| rng.random_range(-0.3..0.3)).collect();
        Ok((a, b))
    })
    .unwrap();
    let separate = sequence_logprobs(
        &model,
        &TokenBatch::new(&seqs, &config).unwrap(),
        Some(&adapter),
    )
    .unwrap();
    let packed_batch = TokenBatch::packed(&[&seqs[..3], &seqs[3..]], &config).unwrap();
    assert_eq!(packed_batch.batch_size(), 2);
    assert_eq!(packed_batch.sequence_count(), 4);
    let longest = seqs.iter().map(|s| s.tokens().len()).max().unwrap();
    assert!(
        packed_batch.padded_len() < 2 * longest,
        "the shared prompt is stored once"
    );
    let packed = sequence_logprobs(&model, &packed_batch, Some(&adapter)).unwrap();
    assert_eq!(packed.count, separate.count);
    let (a, b) = (values(separate.sum), values(packed.sum));
    let diff = max_abs_diff(&a, &b);
    assert!(diff < 1e-4, "separate {a:?} vs packed {b:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A rating group (one transcript, two prompt tails, three labels after each) packed as a trie
/// in one row: each distinct prefix is computed once, and every label's log-prob equals the one
/// from its own row.
#[test]
fn a_trie_of_prompt_tails_and_labels_scores_like_separate_rows() {
    let dir = scratch_dir("trie");
    let path = tiny_model("trie", &TinySpec::new("llama", false));
    let engine = engine(&path);
    let config = engine.config().clone();
    let device = Device::flex();
    let model = decoder(&path, &device);
    let tok = engine.tokenizer();
    let transcript =
        "TEACHER: Compare two thirds and three fifths.\nSTUDENT: Two thirds is bigger.\n";
    let mut seqs = Vec::new();
    for tail in [
        "",
        "Note: the teacher is new.\n",
        "Note: the room is green.\n",
    ] {
        for label in ["Rating: 1", "Rating: 4", "Rating: 7"] {
            let prompt = format!("{transcript}{tail}");
            seqs.push(ScoredSequence::from_texts(tok, &prompt, label).unwrap());
        }
    }
    let separate =
        sequence_logprobs(&model, &TokenBatch::new(&seqs, &config).unwrap(), None).unwrap();
    let trie = TokenBatch::packed(&[&seqs], &config).unwrap();
    let prefixes: std::collections::HashSet<&[u32]> = seqs
        .iter()
        .flat_map(|s| (1..=s.tokens().len()).map(move |n| &s.tokens()[..n]))
        .collect();
    assert_eq!(trie.cells(), prefixes.len(), "one cell per distinct prefix");
    assert_eq!(trie.padded_len(), prefixes.len());
    let packed = sequence_logprobs(&model, &trie, None).unwrap();
    let (a, b) = (values(separate.sum), values(packed.sum));
    let diff = max_abs_diff(&a, &b);
    assert!(diff < 1e-4, "separate {a:?} vs trie {b:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
