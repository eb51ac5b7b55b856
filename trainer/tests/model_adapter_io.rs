//! Adapters on disk: PEFT directories round-trip exactly and bad files are typed errors.

mod model_support;

use burn::tensor::Device;
use debias_guard_testkit::{max_abs_diff, scratch_dir, tiny_model, TinySpec};
use debias_guard_trainer::model::{
    load_peft, peft_key, save_peft, LoraAdapter, LoraConfig, Projection, TokenBatch,
    ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE,
};
use model_support::{decoder, engine, values};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// An adapter with random non-zero `A` and `B`.
fn random_adapter(
    config: &LoraConfig,
    model: &debias_guard::model::ModelConfig,
    device: &Device,
) -> LoraAdapter {
    let mut rng = StdRng::seed_from_u64(11);
    LoraAdapter::from_values(config, model, device, |_, _, (out, inp)| {
        let r = config.rank;
        let a = (0..r * inp).map(|_| rng.random_range(-0.2..0.2)).collect();
        let b = (0..out * r).map(|_| rng.random_range(-0.2..0.2)).collect();
        Ok((a, b))
    })
    .unwrap()
}

#[test]
fn peft_directory_round_trips_exactly() {
    let dir = scratch_dir("peft-round-trip");
    let path = tiny_model("peft-round-trip", &TinySpec::new("llama", false));
    let engine = engine(&path);
    let model_config = engine.config().clone();
    let device = Device::flex();
    let lora = LoraConfig {
        rank: 8,
        alpha: 16.0,
        use_rslora: true,
        targets: vec![Projection::Q, Projection::V, Projection::Down],
        seed: 0,
    };
    let adapter = random_adapter(&lora, &model_config, &device);
    let out = dir.join("adapter");
    save_peft(&adapter, &out, "tiny-llama").unwrap();

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(ADAPTER_CONFIG_FILE)).unwrap())
            .unwrap();
    assert_eq!(json["r"], 8);
    assert_eq!(json["lora_alpha"], 16.0);
    assert_eq!(json["use_rslora"], true);
    assert_eq!(json["peft_type"], "LORA");
    assert_eq!(json["task_type"], "CAUSAL_LM");
    assert_eq!(json["base_model_name_or_path"], "tiny-llama");
    assert_eq!(
        json["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
    let bytes = std::fs::read(out.join(ADAPTER_WEIGHTS_FILE)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let a = file.tensor(&peft_key(1, Projection::Down, 'A')).unwrap();
    assert_eq!(a.shape(), &[8, model_config.ffn_size]);
    let b = file
        .tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")
        .unwrap();
    assert_eq!(
        b.shape(),
        &[model_config.n_heads * model_config.head_dim, 8]
    );

    let loaded = load_peft(&out, &model_config, &device).unwrap();
    assert_eq!(loaded.config.rank, 8);
    assert_eq!(loaded.config.targets, lora.targets);
    assert!(loaded.config.use_rslora);
    assert_eq!(adapter.pairs().count(), loaded.pairs().count());
    for ((l1, t1, p1), (l2, t2, p2)) in adapter.pairs().zip(loaded.pairs()) {
        assert_eq!((l1, t1), (l2, t2));
        assert_eq!(values(p1.a.val()), values(p2.a.val()), "A of {l1} {t1:?}");
        assert_eq!(values(p1.b.val()), values(p2.b.val()), "B of {l1} {t1:?}");
        assert_eq!(p1.a.id, p2.a.id, "parameter ids are stable");
    }
    // Same outputs, and different from the base (the adapter is not a no-op).
    let model = decoder(&path, &device);
    let tokens = engine.tokenize("TEACHER: Why?\nSTUDENT: Because.").unwrap();
    let batch = TokenBatch::whole(&tokens, &model_config).unwrap();
    let with_saved = values(model.logits(&batch, Some(&adapter)).unwrap());
    let with_loaded = values(model.logits(&batch, Some(&loaded)).unwrap());
    let base = values(model.logits(&batch, None).unwrap());
    assert_eq!(with_saved, with_loaded);
    assert!(max_abs_diff(&with_saved, &base) > 1e-3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn damaged_adapters_are_typed_errors() {
    let dir = scratch_dir("peft-damaged");
    let path = tiny_model("peft-damaged", &TinySpec::new("qwen2", false));
    let model_config = engine(&path).config().clone();
    let device = Device::flex();
    let adapter = random_adapter(&LoraConfig::default(), &model_config, &device);
    let out = dir.join("adapter");
    save_peft(&adapter, &out, "tiny-qwen2").unwrap();
    let config_path = out.join(ADAPTER_CONFIG_FILE);
    let weights_path = out.join(ADAPTER_WEIGHTS_FILE);
    let good_config = std::fs::read_to_string(&config_path).unwrap();
    let good_weights = std::fs::read(&weights_path).unwrap();

    // Missing directory.
    assert!(load_peft(&dir.join("nowhere"), &model_config, &device).is_err());
    // Truncated tensors.
    std::fs::write(&weights_path, &good_weights[..good_weights.len() / 2]).unwrap();
    assert!(load_peft(&out, &model_config, &device).is_err());
    std::fs::write(&weights_path, &good_weights).unwrap();
    // A config whose rank does not match the tensors.
    std::fs::write(&config_path, good_config.replace("\"r\": 16", "\"r\": 8")).unwrap();
    assert!(load_peft(&out, &model_config, &device).is_err());
    // Unsupported PEFT options.
    std::fs::write(
        &config_path,
        good_config.replace("\"use_dora\": false", "\"use_dora\": true"),
    )
    .unwrap();
    assert!(load_peft(&out, &model_config, &device).is_err());
    std::fs::write(&config_path, "{ not json").unwrap();
    assert!(load_peft(&out, &model_config, &device).is_err());
    // Restored files load again.
    std::fs::write(&config_path, &good_config).unwrap();
    assert!(load_peft(&out, &model_config, &device).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// An exported adapter, loaded by the library's engine, gives the burn model's logits (llama,
/// whose GGUF q/k rows the engine reorders, and qwen2; plain and rsLoRA scaling).
#[test]
fn exported_adapter_runs_in_the_library_engine() {
    let dir = scratch_dir("engine-adapter");
    for (arch, use_rslora) in [("llama", false), ("qwen2", true)] {
        let path = tiny_model("engine-adapter", &TinySpec::new(arch, false));
        let engine = engine(&path);
        let model_config = engine.config().clone();
        let device = Device::flex();
        let lora = LoraConfig {
            rank: 4,
            alpha: 8.0,
            use_rslora,
            ..LoraConfig::default()
        };
        let adapter = random_adapter(&lora, &model_config, &device);
        let out = dir.join(format!("adapter-{arch}"));
        save_peft(&adapter, &out, "tiny").unwrap();
        engine
            .load_adapter("trained", &out)
            .expect("engine loads the export");
        let adapted = engine.with_adapter(Some("trained")).unwrap();

        let model = decoder(&path, &device);
        let tokens = engine
            .tokenize("TEACHER: Why is 2/4 equal to 1/2?\nSTUDENT: You can halve both.")
            .unwrap();
        let positions: Vec<usize> = (0..tokens.len()).collect();
        let batch = TokenBatch::whole(&tokens, model.config()).unwrap();
        let burn = values(model.logits(&batch, Some(&adapter)).unwrap());
        let library = adapted.logits(&tokens, &positions).unwrap().concat();
        let base = engine.logits(&tokens, &positions).unwrap().concat();
        let diff = max_abs_diff(&burn, &library);
        eprintln!(
            "{arch}: max |burn - engine with adapter| = {diff:.2e}, adapter moves logits by {:.2e}",
            max_abs_diff(&library, &base)
        );
        assert!(diff < 1e-4, "{arch}: max |burn - engine| = {diff}");
        assert!(
            max_abs_diff(&library, &base) > 1e-2,
            "{arch}: the adapter changes the engine's logits"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
