// Package debiasguard is the Go binding of debias-guard: it scores classroom transcripts with an
// in-process LLM and measures how much irrelevant social context ("the teacher has 25 years of
// experience") moves the score.
//
// It wraps the C API (include/debias_guard.h) with cgo:
//
//	model, err := debiasguard.Open("models/SmolLM2-135M-Instruct.Q4_1.gguf", nil)
//	if err != nil { ... }
//	defer model.Close()
//	scores, err := model.Score(transcript, &debiasguard.ScoreOptions{Items: []string{"teacher_uptake"}})
//	audit, err := model.Audit(transcript, &debiasguard.AuditOptions{Items: []string{"instructional_dialogue"}})
//	fmt.Println(audit.Flagged, audit.WorstCategoryID, audit.WorstAbsDelta)
//
// Open takes a GGUF file or a Hugging Face model directory. LoadAdapter adds a PEFT LoRA adapter
// next to the loaded weights, WithAdapter gives a *Model that runs it (without copying the base),
// and AdapterDelta scores one item with and without it.
//
// Every failure is returned as a *Error carrying the C status and the library's message (use
// errors.As). Results are plain Go values: nothing returned needs freeing. A *Model may be used
// by many goroutines at once; Close waits for calls in progress and makes later calls fail with
// ErrClosed.
//
// Linking: by default the package links an installed copy of the library (`make install
// PREFIX=...`), found with its header through pkg-config (set PKG_CONFIG_PATH to
// $PREFIX/lib/pkgconfig for a non-standard prefix). Inside a checkout, `-tags dg_checkout` links
// the library `make ffi-lib` builds in target/release instead.
package debiasguard
