#!/usr/bin/env python3
"""Reference values of the Debiasing-DPO loss for trainer/tests/loss_reference.rs.

The DPO sigmoid loss is written out in PyTorch the way TRL's DPOTrainer computes it (no label
smoothing, reference log-probs given): logits = (pc - pr) - (rc - rr), loss = -logsigmoid(beta *
logits) averaged over the batch, rewards = beta * (policy - reference), reward accuracy = mean of
(chosen reward > rejected reward). The SFT term is the negative log-likelihood of the gold answer:
each pair's token log-probs are averaged, then the batch mean is negated. loss = dpo + w * sft
(objective-dependent). Gradients of the loss with respect to the policy inputs are exported too.

Usage: .venv-train-ref/bin/python scripts/dpo_loss_reference.py \
           --out trainer/tests/fixtures/dpo_loss_reference.json
"""
import argparse
import json

import torch
import torch.nn.functional as F

# Fixed inputs: summed response log-probs per pair and the gold answer's token log-probs.
CASES = [
    {
        "name": "mixed_margins",
        "policy_chosen": [-41.25, -63.5, -12.75, -88.0],
        "policy_rejected": [-44.0, -60.25, -15.5, -87.5],
        "reference_chosen": [-42.0, -62.0, -13.0, -90.0],
        "reference_rejected": [-43.5, -61.0, -14.0, -86.0],
        "sft_token_logps": [[-0.25, -1.5, -0.75], [-2.0, -0.5, -0.125], [-0.0625, -3.0, -1.0], [-0.5, -0.5, -4.0]],
    },
    {
        "name": "policy_equals_reference",
        "policy_chosen": [-20.0, -35.5],
        "policy_rejected": [-22.5, -30.0],
        "reference_chosen": [-20.0, -35.5],
        "reference_rejected": [-22.5, -30.0],
        "sft_token_logps": [[-1.0, -2.0, -3.0], [-0.5, -0.25, -0.125]],
    },
    {
        "name": "large_margins",
        "policy_chosen": [-5.0, -300.0, -120.0],
        "policy_rejected": [-200.0, -10.0, -121.0],
        "reference_chosen": [-150.0, -100.0, -119.0],
        "reference_rejected": [-50.0, -200.0, -120.5],
        "sft_token_logps": [[-0.01, -0.02, -0.03], [-6.0, -7.0, -5.0], [-1.0, -1.0, -1.0]],
    },
]

SETTINGS = [
    {"objective": "debias", "beta": 0.1, "sft_weight": 0.1},
    {"objective": "dpo-only", "beta": 0.1, "sft_weight": 0.0},
    {"objective": "sft-only", "beta": 0.1, "sft_weight": 1.0},
    {"objective": "debias", "beta": 0.5, "sft_weight": 0.3},
]


def evaluate(case, setting):
    t = lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True)
    pc, pr = t(case["policy_chosen"]), t(case["policy_rejected"])
    rc = torch.tensor(case["reference_chosen"], dtype=torch.float64)
    rr = torch.tensor(case["reference_rejected"], dtype=torch.float64)
    sft_mean = t([sum(x) / len(x) for x in case["sft_token_logps"]])
    beta, w, objective = setting["beta"], setting["sft_weight"], setting["objective"]

    logits = (pc - pr) - (rc - rr)
    dpo = (-F.logsigmoid(beta * logits)).mean()
    chosen_rewards = beta * (pc - rc).detach()
    rejected_rewards = beta * (pr - rr).detach()
    sft = -sft_mean.mean()
    if objective == "sft-only":
        loss = w * sft
    elif objective == "dpo-only":
        loss = dpo
    else:
        loss = dpo + w * sft
    loss.backward()
    grad = lambda x: [0.0] * len(x) if x.grad is None else x.grad.tolist()
    return {
        "case": case["name"],
        **setting,
        "loss": loss.item(),
        "dpo_loss": dpo.item(),
        "sft_loss": sft.item(),
        "reward_margin": (chosen_rewards - rejected_rewards).mean().item(),
        "reward_accuracy": (chosen_rewards > rejected_rewards).double().mean().item(),
        "chosen_reward": chosen_rewards.mean().item(),
        "rejected_reward": rejected_rewards.mean().item(),
        "grad_policy_chosen": grad(pc),
        "grad_policy_rejected": grad(pr),
        "grad_sft_token_mean": grad(sft_mean),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    results = [evaluate(c, s) for c in CASES for s in SETTINGS]
    doc = {
        "generator": f"scripts/dpo_loss_reference.py (torch {torch.__version__}, float64)",
        "cases": CASES,
        "results": results,
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {len(results)} results to {args.out}")


if __name__ == "__main__":
    main()
