//! The Debiasing-DPO loss, its summaries and its gradients against PyTorch reference values
//! (`scripts/dpo_loss_reference.py` wrote `tests/fixtures/dpo_loss_reference.json`).

use burn::tensor::{Tensor, TensorData};
use debias_guard_testkit::json_f32s;
use debias_guard_trainer::loss::{compute, LossConfig, LossInputs, Objective, PairLogProbs};
use debias_guard_trainer::train::DeviceChoice;
use serde_json::Value;

const TOL: f64 = 1e-5;

fn close(name: &str, got: f64, want: f64) {
    let scale = want.abs().max(1.0);
    assert!(
        (got - want).abs() <= TOL * scale,
        "{name}: got {got}, want {want}"
    );
}

#[test]
fn loss_matches_the_pytorch_reference() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/dpo_loss_reference.json"
    ))
    .expect("fixture");
    let doc: Value = serde_json::from_str(&text).expect("fixture JSON");
    let cases = doc["cases"].as_array().expect("cases");
    let results = doc["results"].as_array().expect("results");
    assert!(results.len() >= 12);
    let device = DeviceChoice::Cpu.device().unwrap();
    let tensor = |v: Vec<f32>| {
        let n = v.len();
        Tensor::<1>::from_data(TensorData::new(v, [n]), &device)
    };
    for r in results {
        let case = cases
            .iter()
            .find(|c| c["name"] == r["case"])
            .expect("case of result");
        let objective = match r["objective"].as_str().unwrap() {
            "debias" => Objective::Debias,
            "dpo-only" => Objective::DpoOnly,
            "sft-only" => Objective::SftOnly,
            other => panic!("unknown objective {other}"),
        };
        let config = LossConfig {
            objective,
            beta: r["beta"].as_f64().unwrap(),
            sft_weight: r["sft_weight"].as_f64().unwrap(),
            consistency_weight: 1.0,
        };
        let sft_means: Vec<f32> = case["sft_token_logps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let v = json_f32s(row);
                v.iter().sum::<f32>() / v.len() as f32
            })
            .collect();
        let pc = tensor(json_f32s(&case["policy_chosen"])).require_grad();
        let pr = tensor(json_f32s(&case["policy_rejected"])).require_grad();
        let sft = tensor(sft_means).require_grad();
        let inputs = LossInputs {
            pairs: Some(PairLogProbs {
                policy_chosen: pc.clone(),
                policy_rejected: pr.clone(),
                reference_chosen: tensor(json_f32s(&case["reference_chosen"])),
                reference_rejected: tensor(json_f32s(&case["reference_rejected"])),
            }),
            sft_token_mean: Some(sft.clone()),
        };
        let out = compute(&config, inputs).unwrap();
        let label = format!("{} / {:?} beta {}", r["case"], objective, config.beta);
        let s = out.stats;
        close(
            &format!("{label} loss"),
            s.loss,
            r["loss"].as_f64().unwrap(),
        );
        if objective.uses_dpo() {
            for (name, got) in [
                ("dpo_loss", s.dpo_loss),
                ("reward_margin", s.reward_margin),
                ("reward_accuracy", s.reward_accuracy),
                ("chosen_reward", s.chosen_reward),
                ("rejected_reward", s.rejected_reward),
            ] {
                close(&format!("{label} {name}"), got, r[name].as_f64().unwrap());
            }
        }
        if objective.uses_sft() {
            close(
                &format!("{label} sft_loss"),
                s.sft_loss,
                r["sft_loss"].as_f64().unwrap(),
            );
        }
        let grads = out.loss.backward();
        for (name, t) in [
            ("grad_policy_chosen", &pc),
            ("grad_policy_rejected", &pr),
            ("grad_sft_token_mean", &sft),
        ] {
            let want = json_f32s(&r[name]);
            let got = match t.grad(&grads) {
                Some(g) => g.try_to_vec_as::<f32>().unwrap(),
                None => vec![0.0; want.len()],
            };
            assert_eq!(got.len(), want.len(), "{label} {name}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                close(
                    &format!("{label} {name}[{i}]"),
                    f64::from(*g),
                    f64::from(*w),
                );
            }
        }
    }
}
