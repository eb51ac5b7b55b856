//! Training throughput of the burn decoder on the CPU: one reference pass (forward only, adapter
//! off) and one training micro-batch (forward + backward through the LoRA adapter), each on a
//! chosen/rejected/SFT triple of fixed length, the shape of one Debiasing-DPO pair.
//!
//! `cargo bench -p debias-guard-trainer --bench train_step` — uses the default model when
//! `models/` has it (`make model`), else a tiny generated one. Settings through the environment:
//! `BENCH_MODEL` (a GGUF file or Hugging Face directory), `BENCH_TOKENS` (tokens per sequence,
//! default 512), `BENCH_RUNS` (timed runs after one warm-up, default 5), `BENCH_LAYOUT` (`packed`,
//! the default: the micro-batch as the trainer runs it, one packed row per pair; `rows`: one
//! padded row per sequence, as a plain batch) and `RAYON_NUM_THREADS` (threads of the CPU
//! backend's matmul; all cores by default). Prints medians and the spread.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use debias_guard_testkit::{tiny_model, TinySpec};
use debias_guard_trainer::loss::{
    self, LossConfig, LossInputs, LossOutput, Objective, PairLogProbs,
};
use debias_guard_trainer::model::{
    sequence_logprobs, Decoder, LoraAdapter, LoraConfig, ScoredSequence, TokenBatch,
};
use debias_guard_trainer::train::{load_base, micro_batch_loss, PreparedPair};
use std::path::PathBuf;
use std::time::Instant;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The model to measure: `BENCH_MODEL`, the default model, or a freshly written tiny one.
fn bench_model() -> PathBuf {
    if let Some(path) = std::env::var_os("BENCH_MODEL") {
        return PathBuf::from(path);
    }
    let default =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if default.exists() {
        return default;
    }
    tiny_model("bench", &TinySpec::default())
}

/// A deterministic pseudo-random token sequence scored over its last quarter.
fn sequence(seed: u64, len: usize, vocab: usize) -> ScoredSequence {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let tokens = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab as u64) as u32
        })
        .collect();
    ScoredSequence::new(tokens, len - len / 4).expect("valid sequence")
}

/// Median, minimum and maximum of the samples, in seconds.
fn summary(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    let median = if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    };
    (median, samples[0], samples[n - 1])
}

/// The Debiasing-DPO loss of one pair with its three sequences as three plain rows of one batch
/// (no packing; the same loss as `micro_batch_loss`).
fn row_batch_loss(
    decoder: &Decoder,
    adapter: &LoraAdapter,
    config: &LossConfig,
    pair: &PreparedPair,
) -> LossOutput {
    let sequences = [pair.chosen.clone(), pair.rejected.clone(), pair.sft.clone()];
    let batch = TokenBatch::new(&sequences, decoder.config()).expect("batch");
    let scores = sequence_logprobs(decoder, &batch, Some(adapter)).expect("forward");
    let one = |v: f32| Tensor::from_data(TensorData::new(vec![v], [1]), decoder.device());
    let inputs = LossInputs {
        pairs: Some(PairLogProbs {
            policy_chosen: scores.sum.clone().narrow(0, 0, 1),
            policy_rejected: scores.sum.narrow(0, 1, 1),
            reference_chosen: one(pair.reference.0),
            reference_rejected: one(pair.reference.1),
        }),
        sft_token_mean: Some(scores.mean.narrow(0, 2, 1)),
    };
    loss::compute(config, inputs).expect("loss")
}

fn time_runs(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    f(); // warm-up
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect()
}

fn report(what: &str, tokens: usize, samples: Vec<f64>) {
    let (median, min, max) = summary(samples);
    println!(
        "{what:<34} median {:>8.1} ms   ({:.1}–{:.1})   {:>8.0} tokens/s",
        median * 1e3,
        min * 1e3,
        max * 1e3,
        tokens as f64 / median
    );
}

fn main() {
    let path = bench_model();
    let len = env_usize("BENCH_TOKENS", 512).max(8);
    let runs = env_usize("BENCH_RUNS", 5).max(1);
    let device = Device::flex().autodiff();
    let (decoder, _tokenizer) = load_base(&path, &device).expect("load model");
    let config = decoder.config().clone();
    let adapter = LoraAdapter::init(&LoraConfig::default(), &config, &device).expect("adapter");
    let pair = PreparedPair {
        chosen: sequence(1, len, config.vocab_size),
        rejected: sequence(2, len, config.vocab_size),
        sft: sequence(3, len, config.vocab_size),
        reference: (-50.0, -55.0),
    };
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let packed = match std::env::var("BENCH_LAYOUT").as_deref() {
        Err(_) | Ok("packed") => true,
        Ok("rows") => false,
        Ok(other) => panic!("BENCH_LAYOUT must be `packed` or `rows`, not `{other}`"),
    };
    let cells = if packed {
        let group = [pair.chosen.clone(), pair.rejected.clone(), pair.sft.clone()];
        TokenBatch::packed(&[&group[..]], &config)
            .expect("batch")
            .cells()
    } else {
        3 * len
    };
    println!(
        "model {} ({} layers, hidden {}), {len} tokens per sequence, {runs} runs, threads {threads}, \
         micro-batch {} ({cells} token positions computed)",
        path.display(),
        config.n_layers,
        config.hidden_size,
        if packed { "packed" } else { "as rows" }
    );

    let reference_batch =
        TokenBatch::new(&[pair.chosen.clone(), pair.rejected.clone()], &config).expect("batch");
    let samples = time_runs(runs, || {
        let out = sequence_logprobs(&decoder, &reference_batch, None).expect("forward");
        std::hint::black_box(out.sum.into_data());
    });
    report("reference pass (2 sequences)", 2 * len, samples);

    let loss = LossConfig::new(Objective::Debias);
    let samples = time_runs(runs, || {
        let out = if packed {
            micro_batch_loss(&decoder, &adapter, &loss, &[&pair])
                .expect("loss")
                .0
        } else {
            row_batch_loss(&decoder, &adapter, &loss, &pair)
        };
        let grads = out.loss.backward();
        std::hint::black_box(GradientsParams::from_grads(grads, &adapter));
    });
    report("train micro-batch (3 sequences)", 3 * len, samples);
}
