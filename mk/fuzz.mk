# Fuzzing with cargo-fuzz (libFuzzer): five targets in fuzz/, each calling one entry function of
# debias_guard_testkit::fuzz_entry. Optional and NOT part of `make test` (it needs nightly).
# Included by the Makefile, which defines CARGO. Limits and their reasons: docs/RELIABILITY.md.
#
#   make fuzz                          every target for FUZZ_SECONDS (default 600) each
#   make fuzz FUZZ_TARGETS=hf_dir FUZZ_SECONDS=60
#   make fuzz-seeds                    seed corpora into fuzz/corpus/<target>/ (stable is enough)
#
# Needs: a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz
# (`cargo install cargo-fuzz --locked`). Crashes land in fuzz/artifacts/<target>/; add each
# one, once fixed, to tests/corpus/<target>/ (replayed on stable by tests/fuzz_corpus.rs).

FUZZ_SECONDS   ?= 600
FUZZ_TARGETS   ?= gguf_model hf_dir peft_adapter json_files chat_template
# One input may run 10 s; a single allocation over 512 MiB, or 2 GiB resident, is a finding.
# Fork mode keeps fuzzing past a timeout or out-of-memory input (each is saved as an artifact);
# a crash stops the target. `make fuzz` fails at the end if any target left an artifact.
FUZZ_TIMEOUT   ?= 10
FUZZ_MALLOC_MB ?= 512
FUZZ_RSS_MB    ?= 2048
FUZZ_FLAGS     := -timeout=$(FUZZ_TIMEOUT) -malloc_limit_mb=$(FUZZ_MALLOC_MB) \
                  -rss_limit_mb=$(FUZZ_RSS_MB) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
                  -fork=1 -ignore_timeouts=1 -ignore_ooms=1

.PHONY: fuzz fuzz-check fuzz-seeds

fuzz-check:
	@if ! $(CARGO) +nightly --version >/dev/null 2>&1; then \
	  echo "make fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; fi
	@if ! $(CARGO) +nightly fuzz --version >/dev/null 2>&1; then \
	  echo "make fuzz needs cargo-fuzz: cargo install cargo-fuzz --locked" >&2; exit 1; fi

fuzz-seeds:
	$(CARGO) run --release --locked -p debias-guard-testkit --bin make_fuzz_seeds -- fuzz/corpus

fuzz: fuzz-check fuzz-seeds
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz target $$t for $(FUZZ_SECONDS) s"; \
	  $(CARGO) +nightly fuzz run --release $$t corpus/$$t -- $(FUZZ_FLAGS) || exit 1; \
	done
	@if ls fuzz/artifacts/*/* >/dev/null 2>&1; then \
	  echo "fuzzing left inputs to look at in fuzz/artifacts/ (fix, then move them to tests/corpus/)" >&2; \
	  exit 1; fi
