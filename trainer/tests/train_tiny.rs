//! The training loop on a tiny generated model: the policy starts equal to the reference, one step
//! lowers the loss on its batch, packed micro-batches give the loss of separate rows, and an
//! interrupted + resumed run ends with the same adapter as an uninterrupted one.

use burn::tensor::{Tensor, TensorData};
use debias_guard_testkit::{scratch_dir, tiny_model, TinySpec};
use debias_guard_trainer::data::{write_jsonl, PreferencePair};
use debias_guard_trainer::loss::{self, LossConfig, LossInputs, Objective, PairLogProbs};
use debias_guard_trainer::model::{
    load_peft, sequence_logprobs, token_logprobs, LoraAdapter, ScoredSequence, TokenBatch,
};
use debias_guard_trainer::optim::{Optimiser, Schedule};
use debias_guard_trainer::train::{
    self, data_digest, fill_reference, load_base, micro_batch_loss, tokenize_pairs, DeviceChoice,
    PreparedPair, TrainArgs, TrainData, Trainer,
};
use std::path::Path;

fn pairs(n: usize) -> Vec<PreferencePair> {
    (0..n)
        .map(|i| {
            let transcript =
                format!("TEACHER: Why does {i} plus one work?\nSTUDENT: Because we count on.");
            PreferencePair {
                id: format!("p{i}"),
                example_id: format!("e{i}"),
                context_id: "ctx".into(),
                prompt: format!("Context: the student is new.\n{transcript}\nRate the dialogue.\n"),
                chosen: format!("The student explains a reason. Rating: {}", 3 + i % 3),
                rejected: "The student seems weak. Rating: 1".into(),
                neutral_prompt: format!("{transcript}\nRate the dialogue.\n"),
                gold: (3 + i % 3) as u8,
                neutral_rating: None,
                biased_rating: None,
                neutral_expected: None,
                biased_expected: None,
            }
        })
        .collect()
}

fn args(model: &Path, pairs: &Path, out: &Path) -> TrainArgs {
    TrainArgs {
        model: model.to_path_buf(),
        pairs: Some(pairs.to_path_buf()),
        groups: Default::default(),
        no_eos: false,
        out: out.to_path_buf(),
        objective: Objective::Debias,
        beta: 0.1,
        sft_weight: None,
        lr: 2e-3,
        epochs: 2,
        micro_batch: 1,
        grad_accum: 2,
        rank: 4,
        alpha: 8.0,
        targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        seed: 5,
        checkpoint_every: 100,
        resume: false,
        device: DeviceChoice::Cpu,
        max_pairs: None,
        stop_after_steps: None,
        no_export: false,
    }
}

/// The pairs a pair-trained trainer holds.
fn pairs_of(t: &Trainer) -> &[PreparedPair] {
    match &t.data {
        TrainData::Pairs(p) => p,
        TrainData::Groups(_) => panic!("not a pair-trained trainer"),
    }
}

/// A trainer over all `pairs` in one micro-batch (one optimiser step sees every pair).
fn trainer(dir: &Path, n: usize) -> Trainer {
    let model = tiny_model("train", &TinySpec::default());
    let device = DeviceChoice::Cpu.device().unwrap();
    let (decoder, tokenizer) = load_base(&model, &device).unwrap();
    let mut a = args(&model, Path::new("unused"), dir);
    a.micro_batch = n;
    a.grad_accum = 1;
    a.epochs = 1;
    let run = a.run_config(n).unwrap();
    let mut prepared = tokenize_pairs(&tokenizer, Objective::Debias, &pairs(n), true).unwrap();
    let digest = data_digest(&prepared);
    fill_reference(&decoder, &mut prepared, &digest, dir, 2).unwrap();
    let adapter = LoraAdapter::init(&run.lora, decoder.config(), &device).unwrap();
    Trainer {
        decoder,
        adapter,
        optimiser: Optimiser::new(&run.optim),
        schedule: Schedule::new(&run.optim, 1),
        run,
        data: TrainData::Pairs(prepared),
        step: 0,
        total_steps: 1,
    }
}

#[test]
fn fresh_policy_equals_the_reference_and_one_step_lowers_the_loss() {
    let dir = scratch_dir("step");
    let mut t = trainer(&dir, 3);
    let batch: Vec<_> = pairs_of(&t).iter().collect();
    let config = LossConfig::new(Objective::Debias);
    let (before, tokens) = micro_batch_loss(&t.decoder, &t.adapter, &config, &batch).unwrap();
    assert!(tokens > 0);
    // B = 0: policy log-probs equal the reference ones, so every margin is 0 and DPO = ln 2.
    assert!(
        before.stats.reward_margin.abs() < 1e-4,
        "{:?}",
        before.stats
    );
    assert!((before.stats.dpo_loss - std::f64::consts::LN_2).abs() < 1e-4);
    assert!(before.stats.sft_loss > 0.0);
    let m = t.train_step().unwrap();
    assert_eq!(m.step, 1);
    assert!(m.grad_norm > 0.0 && m.grad_norm.is_finite());
    assert!(
        (m.stats.loss - before.stats.loss).abs() < 1e-5,
        "metrics report the pre-update loss"
    );
    let batch: Vec<_> = pairs_of(&t).iter().collect();
    let (after, _) = micro_batch_loss(&t.decoder, &t.adapter, &config, &batch).unwrap();
    assert!(
        after.stats.loss < before.stats.loss,
        "loss {} -> {}",
        before.stats.loss,
        after.stats.loss
    );
    assert!(after.stats.reward_margin > 0.0, "{:?}", after.stats);
    assert!(after.stats.sft_loss < before.stats.sft_loss);
}

/// The loss of a micro-batch from separate rows: one forward of chosen + rejected, one of the
/// SFT sequences (the layout before pairs were packed), for comparison.
fn unpacked_loss(t: &Trainer, config: &LossConfig) -> f64 {
    let device = t.decoder.device();
    let row = |values: Vec<f32>| {
        let n = values.len();
        Tensor::<1>::from_data(TensorData::new(values, [n]), device)
    };
    let m = pairs_of(t).len();
    let mut inputs = LossInputs {
        pairs: None,
        sft_token_mean: None,
    };
    if config.objective.uses_dpo() {
        let seqs: Vec<ScoredSequence> = pairs_of(t)
            .iter()
            .map(|p| p.chosen.clone())
            .chain(pairs_of(t).iter().map(|p| p.rejected.clone()))
            .collect();
        let tb = TokenBatch::new(&seqs, t.decoder.config()).unwrap();
        let sum = sequence_logprobs(&t.decoder, &tb, Some(&t.adapter))
            .unwrap()
            .sum;
        inputs.pairs = Some(PairLogProbs {
            policy_chosen: sum.clone().narrow(0, 0, m),
            policy_rejected: sum.narrow(0, m, m),
            reference_chosen: row(pairs_of(t).iter().map(|p| p.reference.0).collect()),
            reference_rejected: row(pairs_of(t).iter().map(|p| p.reference.1).collect()),
        });
    }
    if config.objective.uses_sft() {
        let seqs: Vec<ScoredSequence> = pairs_of(t).iter().map(|p| p.sft.clone()).collect();
        let tb = TokenBatch::new(&seqs, t.decoder.config()).unwrap();
        let lp = token_logprobs(&t.decoder, &tb, Some(&t.adapter)).unwrap();
        inputs.sft_token_mean = Some(lp.per_sequence().mean);
    }
    loss::compute(config, inputs).unwrap().stats.loss
}

#[test]
fn packed_micro_batches_give_the_loss_of_separate_rows() {
    let dir = scratch_dir("packed");
    let mut t = trainer(&dir, 3);
    t.train_step().unwrap(); // B != 0 from here on, so the adapter takes part
    for pairs in [3, 1] {
        if let TrainData::Pairs(p) = &mut t.data {
            p.truncate(pairs);
        }
        let batch: Vec<_> = pairs_of(&t).iter().collect();
        for objective in [Objective::Debias, Objective::DpoOnly, Objective::SftOnly] {
            let config = LossConfig::new(objective);
            let (packed, _) = micro_batch_loss(&t.decoder, &t.adapter, &config, &batch).unwrap();
            let separate = unpacked_loss(&t, &config);
            assert!(
                (packed.stats.loss - separate).abs() < 1e-5,
                "{objective:?}, {pairs} pairs: packed {} vs separate rows {separate}",
                packed.stats.loss
            );
        }
    }
}

fn adapter_values(dir: &Path, model: &Path) -> Vec<Vec<f32>> {
    let config = debias_guard::weights::DenseCheckpoint::load(model)
        .unwrap()
        .config;
    let device = DeviceChoice::Cpu.device().unwrap();
    let adapter = load_peft(dir, &config, &device).unwrap();
    adapter
        .pairs()
        .flat_map(|(_, _, p)| [p.a.val(), p.b.val()])
        .map(|t| t.try_to_vec_as::<f32>().unwrap())
        .collect()
}

#[test]
fn interrupted_and_resumed_run_ends_with_the_same_adapter() {
    let dir = scratch_dir("resume");
    let model = tiny_model("train", &TinySpec::default());
    let pairs_path = dir.join("pairs.jsonl");
    write_jsonl(&pairs_path, &pairs(4)).unwrap();

    let whole = dir.join("whole");
    let full = train::train(&args(&model, &pairs_path, &whole)).unwrap();
    assert_eq!((full.steps, full.total_steps), (4, 4));

    let split = dir.join("split");
    let mut first = args(&model, &pairs_path, &split);
    first.stop_after_steps = Some(1);
    let part = train::train(&first).unwrap();
    assert_eq!(part.steps, 1);
    assert!(
        !split.join("adapter").exists(),
        "no export before the run ends"
    );
    // Simulate a kill after more steps had been logged than checkpointed.
    let mut metrics = std::fs::read_to_string(split.join("metrics.jsonl")).unwrap();
    metrics.push_str("{\"step\": 2, \"torn");
    std::fs::write(split.join("metrics.jsonl"), metrics).unwrap();

    let mut changed = first.clone();
    changed.stop_after_steps = None;
    changed.resume = true;
    changed.lr = 1e-3;
    assert!(matches!(
        train::train(&changed),
        Err(debias_guard_trainer::Error::Checkpoint { .. })
    ));
    changed.lr = first.lr;
    let rest = train::train(&changed).unwrap();
    assert_eq!(rest.steps, 4);
    assert_eq!(rest.metrics.first().map(|m| m.step), Some(2));

    let a = adapter_values(&whole.join("adapter"), &model);
    let b = adapter_values(&split.join("adapter"), &model);
    assert_eq!(a, b, "resumed adapter differs from the uninterrupted one");
    assert!(a.iter().any(|v| v.iter().any(|&x| x != 0.0)));

    let losses = |dir: &Path| -> Vec<(usize, f64)> {
        debias_guard_trainer::train::metrics::read_metrics(&dir.join("metrics.jsonl"))
            .unwrap()
            .iter()
            .map(|m| (m.step, m.stats.loss))
            .collect()
    };
    assert_eq!(losses(&whole), losses(&split));
    for f in ["loss.svg", "loss.png", "reward.svg", "lr.png"] {
        assert!(whole.join("plots").join(f).exists(), "{f}");
    }
}

#[test]
fn bad_options_and_files_are_typed_errors() {
    let dir = scratch_dir("bad");
    let model = tiny_model("train", &TinySpec::default());
    let pairs_path = dir.join("pairs.jsonl");
    write_jsonl(&pairs_path, &pairs(2)).unwrap();
    let mut a = args(&model, &pairs_path, &dir.join("out"));
    a.micro_batch = 0;
    assert!(matches!(
        train::train(&a),
        Err(debias_guard_trainer::Error::Config(_))
    ));
    let mut a = args(&model, &pairs_path, &dir.join("out"));
    a.targets = vec!["qq_proj".into()];
    assert!(matches!(
        train::train(&a),
        Err(debias_guard_trainer::Error::Config(_))
    ));
    let mut a = args(&model, &pairs_path, &dir.join("out"));
    a.resume = true;
    assert!(matches!(
        train::train(&a),
        Err(debias_guard_trainer::Error::Checkpoint { .. })
    ));
    std::fs::write(&pairs_path, "{\"id\": 1}\n").unwrap();
    let a = args(&model, &pairs_path, &dir.join("out"));
    assert!(matches!(
        train::train(&a),
        Err(debias_guard_trainer::Error::Record { line: 1, .. })
    ));
}

/// Records of `n` short transcripts on one rubric item, gold 1..=7 in turn.
fn examples(n: usize, offset: usize) -> Vec<debias_guard_trainer::data::Example> {
    (0..n)
        .map(|i| debias_guard_trainer::data::Example {
            id: format!("t{}/student_reasoning", i + offset),
            transcript: format!(
                "TEACHER: Why does {} plus one work?\nSTUDENT: Because we count on.",
                i + offset
            ),
            item: "student_reasoning".into(),
            gold: (1 + (i + offset) % 7) as u8,
        })
        .collect()
}

/// `--objective consistency` trains on examples (no pairs): it validates before training and
/// after every step, keeps the best adapter as `adapter/` and the last one as `last-adapter/`,
/// logs the direct-mode terms, and a step lowers the consistency loss of its batch.
#[test]
fn consistency_runs_on_examples_with_validation_and_keeps_the_best_adapter() {
    let dir = scratch_dir("consistency");
    let model = tiny_model("train", &TinySpec::default());
    let (train_file, val_file) = (dir.join("train.jsonl"), dir.join("val.jsonl"));
    write_jsonl(&train_file, &examples(4, 0)).unwrap();
    write_jsonl(&val_file, &examples(2, 10)).unwrap();
    let mut a = args(&model, Path::new("unused"), &dir.join("run"));
    a.pairs = None;
    a.objective = Objective::Consistency;
    a.groups.examples = Some(train_file.clone());
    a.groups.validation = Some(val_file);
    a.groups.validate_every = 1;
    a.epochs = 1;
    let summary = train::train(&a).expect("consistency run");
    assert!(summary.finished);
    assert_eq!(summary.steps, 2);
    // Before training (step 0) and after each step.
    let steps: Vec<usize> = summary.validation.iter().map(|v| v.step).collect();
    assert_eq!(steps, vec![0, 1, 2]);
    assert!(summary
        .validation
        .iter()
        .all(|v| v.context_shift.is_finite() && v.label_mass > 0.0 && v.label_mass <= 1.0 + 1e-9));
    for m in &summary.metrics {
        assert!(
            m.stats.consistency_loss > 0.0 && m.stats.sft_loss > 0.0,
            "{m:?}"
        );
        assert_eq!(m.stats.dpo_loss, 0.0);
    }
    let run = dir.join("run");
    assert!(run.join("adapter/adapter_config.json").exists());
    assert!(run.join("last-adapter/adapter_config.json").exists());
    let run_config = std::fs::read_to_string(run.join("run_config.json")).unwrap();
    assert!(run_config.contains("\"consistency\""), "{run_config}");

    // One optimiser step over one group lowers that group's loss.
    let (decoder, _) = load_base(&model, &DeviceChoice::Cpu.device().unwrap()).unwrap();
    let config = a.run_config(4).unwrap();
    let engine = debias_guard::Engine::open(&model, &Default::default()).unwrap();
    let groups = debias_guard_trainer::consistency::build_groups(
        &engine,
        &debias_guard::PromptBuilder::default(),
        &debias_guard::Rubric::builtin(),
        &debias_guard::guard::ProbeCatalog::builtin(),
        &examples(1, 3),
        &config.draw.unwrap(),
    )
    .unwrap();
    assert_eq!(groups[0].prompts, 9, "7 categories + 1 control + neutral");
    let device = DeviceChoice::Cpu.device().unwrap();
    let mut t = Trainer {
        adapter: LoraAdapter::init(&config.lora, decoder.config(), &device).unwrap(),
        decoder,
        optimiser: Optimiser::new(&config.optim),
        schedule: Schedule::new(&config.optim, 2),
        run: debias_guard_trainer::train::RunConfig {
            micro_batch: 1,
            grad_accum: 1,
            ..config
        },
        data: TrainData::Groups(groups.clone()),
        step: 0,
        total_steps: 2,
    };
    t.train_step().unwrap(); // B = 0: the first step only moves B off zero
    let batch: Vec<_> = groups.iter().collect();
    let loss_of = |t: &Trainer| {
        train::group_batch_loss(&t.decoder, Some(&t.adapter), &t.run.loss, &batch)
            .unwrap()
            .0
            .stats
            .loss
    };
    let before = loss_of(&t);
    t.train_step().unwrap();
    let after = loss_of(&t);
    assert!(after < before, "loss {before} -> {after}");
}
