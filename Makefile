# debias-guard: the two entry points are `make audit` (main job) and `make test`.

MODEL      := models/SmolLM2-135M-Instruct.Q4_1.gguf
BIN        := target/release/debias-guard
TRANSCRIPT := assets/transcripts/fractions_discussion.txt
# The debiasing adapter shipped for the default model (see its README for how it was trained).
ADAPTER    := assets/adapters/smollm2-135m-consistency
TRAINER    := target/release/debias-guard-trainer
CARGO      ?= cargo

# C ABI, header, install, C/C++/Go bindings and examples.
include mk/ffi.mk
# Fuzzing (optional, nightly + cargo-fuzz; not part of `make test`).
include mk/fuzz.mk

.PHONY: all model build audit train-adapter train-faithful test lint unit bench bench-trainer bench-trainer-torch fixtures clean trainer-gpu-check

all: build

## Fetch the default model (sha256-checked) if it is missing.
model: $(MODEL)
$(MODEL):
	bash scripts/fetch_model.sh models

## Release build of the library (rlib, cdylib, staticlib) and the CLI.
build:
	$(CARGO) build --release --locked

## Main job: audit a bundled sample transcript with the default rubric and probe catalog, on the
## base model and with the shipped debiasing adapter, side by side (one JSON and one HTML report).
audit: model build
	mkdir -p target/audit
	$(BIN) audit --model $(MODEL) --adapter $(ADAPTER) --compare-base --transcript $(TRANSCRIPT) \
	    --json target/audit/report.json --html target/audit/report.html

## Retrain the shipped adapter from scratch (CPU; about half an hour on 2 cores; not part of `audit`).
train-adapter: model
	$(CARGO) build --release --locked -p debias-guard-trainer
	$(TRAINER) synth --out target/adapter/data --seed 7 --transcripts 120 --test-fraction 0.25
	head -n 240 target/adapter/data/train.jsonl > target/adapter/data/fit.jsonl
	tail -n 24 target/adapter/data/train.jsonl > target/adapter/data/validation.jsonl
	$(TRAINER) train --model $(MODEL) --objective consistency --consistency-weight 5 \
	    --examples target/adapter/data/fit.jsonl --max-pairs 120 \
	    --validation target/adapter/data/validation.jsonl --out target/adapter/run \
	    --grad-accum 4 --epochs 1 --lr 2e-4 --validate-every 5 --patience 3 --checkpoint-every 5 --seed 1
	$(TRAINER) export --model $(MODEL) --checkpoint target/adapter/run/adapter --dtype f16 --out target/adapter/f16

## The faithful Debiasing-DPO run (issue 11's comparison row, not the shipped adapter): 1,000 pairs
## of the model's own reasoning (200 training records x 5 contexts), then DPO + 0.1 SFT with EOS,
## 32 pairs per step, one epoch, validation every 4 steps. Hours on two cores; the pairs and the
## training resume where they stopped (add RESUME=--resume after an interruption of `train`).
train-faithful: model
	$(CARGO) build --release --locked -p debias-guard-trainer
	$(TRAINER) synth --out target/adapter/data --seed 7 --transcripts 120 --test-fraction 0.25
	head -n 240 target/adapter/data/train.jsonl > target/adapter/data/fit.jsonl
	tail -n 24 target/adapter/data/train.jsonl > target/adapter/data/validation.jsonl
	mkdir -p target/faithful
	$(TRAINER) pairs --model $(MODEL) --input target/adapter/data/fit.jsonl \
	    --output target/faithful/pairs.jsonl --contexts-per-example 5 --limit 200 --seed 1
	$(TRAINER) train --model $(MODEL) --objective debias --pairs target/faithful/pairs.jsonl \
	    --validation target/adapter/data/validation.jsonl --validate-every 4 --patience 3 \
	    --out target/faithful/run --epochs 1 --lr 1e-4 --checkpoint-every 2 --seed 1 $(RESUME)

## Formatting and lints (warnings are errors).
lint:
	@if $(CARGO) fmt --version >/dev/null 2>&1; then $(CARGO) fmt --all -- --check; \
	 else echo "warning: rustfmt is not installed; format check skipped"; fi
	@if $(CARGO) clippy --version >/dev/null 2>&1; then $(CARGO) clippy --workspace --release --locked --all-targets -- -D warnings; \
	 else echo "warning: clippy is not installed; lints skipped"; fi

## All tests: tiny generated models and the real default model.
unit: model
	$(CARGO) test --release --locked
	$(CARGO) test --release --locked -p debias-guard-trainer

## The trainer's GPU feature keeps compiling (no GPU needed; see trainer/README.md). Release profile: it
## reuses the dependencies `lint` already checked.
trainer-gpu-check:
	$(CARGO) check --release --locked -p debias-guard-trainer --features vulkan

test: lint unit ffi-test trainer-gpu-check

## Benchmarks on the real model; see docs/BENCHMARKS.md.
bench: model
	$(CARGO) bench --locked --bench engine
	bash scripts/setup_reference_env.sh
	.venv-ref/bin/python scripts/bench_llamacpp.py --prompts target/bench/prompts.json --out target/bench/llamacpp.json

## Trainer throughput on the CPU (one reference pass, one training micro-batch).
bench-trainer: model
	$(CARGO) bench --locked -p debias-guard-trainer --bench train_step

## The same two timings in PyTorch + PEFT (reference for bench-trainer; creates .venv-train-ref).
bench-trainer-torch: model
	bash scripts/setup_train_reference_env.sh
	.venv-train-ref/bin/python scripts/bench_trainer_torch.py --out target/bench/trainer_torch.json

## Regenerate the llama.cpp parity fixtures (needs the reference venv; several minutes).
fixtures: model
	bash scripts/setup_reference_env.sh
	$(CARGO) run --release --locked --example parity_prompts
	.venv-ref/bin/python scripts/llamacpp_reference.py --out tests/fixtures/llamacpp_reference.json
	.venv-ref/bin/python scripts/dequantize_gguf.py $(MODEL) models/SmolLM2-135M-Instruct.F32.gguf
	.venv-ref/bin/python scripts/llamacpp_reference.py --model models/SmolLM2-135M-Instruct.F32.gguf \
	    --out tests/fixtures/llamacpp_reference_f32.json

clean:
	$(CARGO) clean
