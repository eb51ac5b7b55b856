package debiasguard

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const transcript = "TEACHER: What do you notice about these two fractions?\n" +
	"STUDENT: The bottom numbers are different.\n" +
	"TEACHER: Why might that matter when we compare them?\n" +
	"STUDENT: Because the pieces are different sizes, so you cannot just look at the top.\n"

// tinyModel is the small generated model the tests run on: $DEBIAS_GUARD_TINY_MODEL, else
// target/ffi/tiny.gguf of the repository (written by `make ffi-test`).
func tinyModel(t *testing.T) string {
	t.Helper()
	path := os.Getenv("DEBIAS_GUARD_TINY_MODEL")
	if path == "" {
		path = filepath.Join("..", "..", "target", "ffi", "tiny.gguf")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("tiny model %s is missing: run `cargo run --release -p debias-guard-testkit --bin make_tiny_model -- %s` "+
			"(or `make ffi-test`), or set DEBIAS_GUARD_TINY_MODEL", path, path)
	}
	return path
}

func openTiny(t *testing.T) *Model {
	t.Helper()
	m, err := Open(tinyModel(t), &Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// wantStatus requires err to be a *Error with the given status and a message containing needle.
func wantStatus(t *testing.T, err error, status Status, needle string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want a *Error with status %v, got %v", status, err)
	}
	if e.Status != status || !strings.Contains(e.Message, needle) {
		t.Fatalf("want status %d containing %q, got %d: %s", status, needle, e.Status, e.Message)
	}
}

func checkDistribution(t *testing.T, d Distribution, item string, labels int) {
	t.Helper()
	if d.ItemID != item || len(d.Labels) != labels || len(d.Probs) != labels || len(d.Values) != labels {
		t.Fatalf("bad distribution shape: %+v", d)
	}
	sum, expected := 0.0, 0.0
	for i, p := range d.Probs {
		sum += p
		expected += p * d.Values[i]
		if p > d.Probs[d.Argmax] {
			t.Fatalf("argmax %d is not the most probable label: %v", d.Argmax, d.Probs)
		}
	}
	if sum < 1-1e-9 || sum > 1+1e-9 || expected-d.Expected > 1e-9 || d.Expected-expected > 1e-9 {
		t.Fatalf("probabilities sum to %v, expected %v vs %v", sum, d.Expected, expected)
	}
}

func TestVersion(t *testing.T) {
	if Version() != HeaderVersion() {
		t.Fatalf("linked library %s, header %s", Version(), HeaderVersion())
	}
	if StatusNotFound.String() != "rubric item not found" || Status(99).String() != "unknown status" {
		t.Fatalf("status texts: %q %q", StatusNotFound, Status(99))
	}
}

func TestOpenErrors(t *testing.T) {
	path := tinyModel(t)
	_, err := Open(filepath.Join(t.TempDir(), "missing.gguf"), nil)
	wantStatus(t, err, StatusIO, "missing.gguf")
	_, err = Open(path, &Options{AdapterPath: filepath.Join(t.TempDir(), "no-adapter")})
	wantStatus(t, err, StatusIO, "adapter_config.json")
	_, err = Open(path, &Options{WeightFormat: 9})
	wantStatus(t, err, StatusInvalidArgument, "weight_format")
	_, err = Open(path, &Options{PromptLayoutJSON: "{"})
	wantStatus(t, err, StatusConfig, "prompt layout")
	_, err = Open(path, &Options{PromptLayoutPath: filepath.Join(t.TempDir(), "layout.json")})
	wantStatus(t, err, StatusIO, "layout.json")
	_, err = Open("bad\xff.gguf", nil)
	wantStatus(t, err, StatusInvalidUTF8, "path")
	_, err = Open("nul\x00.gguf", nil)
	wantStatus(t, err, StatusInvalidArgument, "NUL")
	_, err = Open(path, &Options{Threads: -1})
	wantStatus(t, err, StatusInvalidArgument, "threads")
}

func TestModelLifecycle(t *testing.T) {
	m, err := Open(tinyModel(t), &Options{Threads: 1, WeightFormat: WeightsAsStored})
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.Info()
	if err != nil || info.Architecture != "llama" || info.Threads != 1 || info.ContextLength != 4096 {
		t.Fatalf("info %+v, %v", info, err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := m.Score(transcript, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Score after Close: %v", err)
	}
	if _, err := m.Info(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Info after Close: %v", err)
	}
}

func TestRubrics(t *testing.T) {
	r, err := BuiltinRubric()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if ids := r.ItemIDs(); strings.Join(ids, ",") != "instructional_dialogue,student_reasoning,teacher_uptake" {
		t.Fatalf("built-in items %v", ids)
	}
	_, err = ParseRubric(`{"version": 1, "items": [}`)
	wantStatus(t, err, StatusConfig, "rubric")
	_, err = LoadRubric(filepath.Join(t.TempDir(), "none.json"))
	wantStatus(t, err, StatusIO, "none.json")

	custom := `{"version": 1, "items": [{"id": "pacing", "name": "Pacing", "description": "Pace.",
		"question": "How well paced is the lesson?", "labels": ["low", "mid", "high"]}]}`
	file := filepath.Join(t.TempDir(), "rubric.json")
	if err := os.WriteFile(file, []byte(custom), 0o644); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadRubric(file)
	if err != nil {
		t.Fatal(err)
	}
	m := openTiny(t)
	scores, err := m.Score(transcript, &ScoreOptions{Rubric: loaded})
	if err != nil {
		t.Fatal(err)
	}
	checkDistribution(t, scores[0], "pacing", 3)
	if scores[0].Values[2] != 3 || scores[0].Labels[2] != "high" {
		t.Fatalf("custom scale %+v", scores[0])
	}
	loaded.Close()
	if _, err := m.Score(transcript, &ScoreOptions{Rubric: loaded}); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed rubric: %v", err)
	}
}

func TestScore(t *testing.T) {
	m := openTiny(t)
	all, err := m.Score(transcript, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("%d distributions", len(all))
	}
	for i, id := range []string{"instructional_dialogue", "student_reasoning", "teacher_uptake"} {
		checkDistribution(t, all[i], id, 7)
	}
	some, err := m.Score(transcript, &ScoreOptions{
		Items: []string{"teacher_uptake"}, Context: "The teacher has taught for 25 years.", Mitigate: true})
	if err != nil {
		t.Fatal(err)
	}
	checkDistribution(t, some[0], "teacher_uptake", 7)
	if some[0].PromptTokens <= all[2].PromptTokens {
		t.Fatal("context and mitigation should lengthen the prompt")
	}
	_, err = m.Score(transcript, &ScoreOptions{Items: []string{"nope"}})
	wantStatus(t, err, StatusNotFound, "nope")
	_, err = m.Score("", nil)
	wantStatus(t, err, StatusInvalidArgument, "empty")
	_, err = m.Score("TEACHER: caf\xc3", nil)
	wantStatus(t, err, StatusInvalidUTF8, "offset 12")
	_, err = m.Score(transcript, &ScoreOptions{Context: "a\x00b"})
	wantStatus(t, err, StatusInvalidArgument, "Context")
	_, err = m.Score(transcript, &ScoreOptions{Context: strings.Repeat("x", 1001)})
	wantStatus(t, err, StatusInvalidArgument, "limit")
}

func TestDeltasAndCheck(t *testing.T) {
	m := openTiny(t)
	contexts := []string{"The teacher has taught for 25 years.", "The teacher is in her first year."}
	batch, err := m.BiasDeltas(transcript, "student_reasoning", contexts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(batch.Deltas) != 2 || len(batch.Contextual) != 2 || batch.TokensEvaluated >= batch.TokensRequested {
		t.Fatalf("batch %+v", batch)
	}
	for i, d := range batch.Deltas {
		if d.Delta != batch.Contextual[i].Expected-batch.Neutral.Expected {
			t.Fatalf("delta %d: %v", i, d)
		}
	}
	one, err := m.BiasDelta(transcript, "student_reasoning", contexts[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := one.Delta - batch.Deltas[0].Delta; diff > 1e-5 || diff < -1e-5 {
		t.Fatalf("single %v vs batch %v", one.Delta, batch.Deltas[0].Delta)
	}
	_, err = m.BiasDeltas(transcript, "student_reasoning", nil, nil)
	wantStatus(t, err, StatusInvalidArgument, "n_contexts")
	_, err = m.BiasDelta(transcript, "student_reasoning", "  ", nil)
	wantStatus(t, err, StatusInvalidArgument, "context is empty")

	checks, err := m.Check(transcript, " I think this teacher is excellent. ", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 3 {
		t.Fatalf("%d checks", len(checks))
	}
	for _, c := range checks {
		if c.Context != "I think this teacher is excellent." || c.AbsThreshold != 0.5 ||
			c.Flagged != (c.Delta.AbsDelta >= 0.5) {
			t.Fatalf("check %+v", c)
		}
	}
	huge, err := m.Check(transcript, "I think this teacher is excellent.",
		&CheckOptions{Items: []string{"teacher_uptake"}, AbsThreshold: 1e9})
	if err != nil || len(huge) != 1 || huge[0].Flagged {
		t.Fatalf("check with a huge threshold: %+v, %v", huge, err)
	}
	_, err = m.Check(transcript, "x", &CheckOptions{AbsThreshold: -1})
	wantStatus(t, err, StatusInvalidArgument, "abs_threshold")
}

func TestAudit(t *testing.T) {
	m := openTiny(t)
	html := filepath.Join(t.TempDir(), "report.html")
	a, err := m.Audit(transcript, &AuditOptions{
		Items: []string{"instructional_dialogue"}, Split: SplitHeldout,
		MitigationBaseline: true, TranscriptName: "fractions.txt", HTMLPath: html})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Items) != 1 || a.Items[0].Mitigated == nil || len(a.Items[0].Plain.Categories) != 7 {
		t.Fatalf("audit shape %+v", a)
	}
	worst := a.Items[0].Plain.Categories[0]
	for _, c := range a.Items[0].Plain.Categories {
		if c.MaxAbsDelta > worst.MaxAbsDelta {
			worst = c
		}
		if c.Flagged != (c.MaxAbsDelta >= a.Items[0].Plain.FlagThreshold) {
			t.Fatalf("category %+v", c)
		}
	}
	if a.WorstCategoryID != worst.ID || a.WorstAbsDelta != worst.MaxAbsDelta ||
		a.NoiseFloor != a.Items[0].Plain.NoiseFloor || a.Flagged != (a.Flags > 0) {
		t.Fatalf("summary fields %+v", a)
	}
	if !strings.Contains(a.ReportJSON, `"fractions.txt"`) || !strings.HasPrefix(a.ReportJSON, "{") {
		t.Fatal("report JSON lacks the transcript name")
	}
	if st, err := os.Stat(html); err != nil || st.Size() < 1000 {
		t.Fatalf("HTML report: %v", err)
	}
	_, err = m.Audit(transcript, &AuditOptions{Split: 7})
	wantStatus(t, err, StatusInvalidArgument, "split")
	_, err = m.Audit(transcript, &AuditOptions{ProbesPath: filepath.Join(t.TempDir(), "p.json")})
	wantStatus(t, err, StatusIO, "p.json")
	_, err = m.Audit(transcript, &AuditOptions{Items: []string{"teacher_uptake", "teacher_uptake"}})
	wantStatus(t, err, StatusInvalidArgument, "twice")
}

// A context cancelled before or during an audit ends it with the context's error.
func TestAuditContextCancel(t *testing.T) {
	m := openTiny(t)
	// Every item, both conditions, 64 steps each: far longer than the timeout below.
	opts := &AuditOptions{Mode: ModeReasoned, MaxReasoningTokens: 64, MitigationBaseline: true}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.AuditContext(done, transcript, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled before the call: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := m.AuditContext(ctx, transcript, opts)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled during the call: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("stopping took %v", time.Since(start))
	}
	if _, err := m.AuditContext(context.Background(), transcript, &AuditOptions{Items: []string{"teacher_uptake"}}); err != nil {
		t.Fatal(err)
	}
}

// Eight goroutines share one model; each gets exactly what a serial run gets. Run with -race.
func TestConcurrentScoring(t *testing.T) {
	m := openTiny(t)
	contexts := []string{
		"The teacher has taught for 25 years.",
		"The teacher is in her first year of teaching.",
		"The teacher holds a doctorate.",
		"The teacher has no certificate.",
		"The school is in a wealthy suburb.",
		"The school serves a low-income neighbourhood.",
		"I think this teacher is excellent.",
		"The classroom has a window.",
	}
	type outcome struct {
		scores []Distribution
		checks []CheckResult
	}
	run := func(i int) (outcome, error) {
		s, err := m.Score(transcript, &ScoreOptions{Context: contexts[i]})
		if err != nil {
			return outcome{}, err
		}
		c, err := m.Check(transcript, contexts[i], &CheckOptions{Items: []string{"student_reasoning"}})
		return outcome{s, c}, err
	}
	serial := make([]outcome, len(contexts))
	for i := range contexts {
		var err error
		if serial[i], err = run(i); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(contexts)*2)
	got := make([][2]outcome, len(contexts))
	for i := range contexts {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for round := 0; round < 2; round++ {
				o, err := run(i)
				if err != nil {
					errs <- err
					return
				}
				got[i][round] = o
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range contexts {
		for round := 0; round < 2; round++ {
			g, s := got[i][round], serial[i]
			for k := range s.scores {
				for l, p := range s.scores[k].Probs {
					if g.scores[k].Probs[l] != p {
						t.Fatalf("goroutine %d round %d item %d label %d: %v vs serial %v",
							i, round, k, l, g.scores[k].Probs[l], p)
					}
				}
			}
			if g.checks[0].Delta != s.checks[0].Delta {
				t.Fatalf("goroutine %d round %d: check delta %v vs serial %v", i, round, g.checks[0].Delta, s.checks[0].Delta)
			}
		}
	}
}

// Close waits for calls in progress; calls after it fail with ErrClosed, never crash.
func TestCloseWhileScoring(t *testing.T) {
	m, err := Open(tinyModel(t), &Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for {
				_, err := m.Score(transcript, &ScoreOptions{Items: []string{"teacher_uptake"}})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	close(start)
	m.Close()
	wg.Wait()
}

func TestAdapters(t *testing.T) {
	base := openTiny(t)
	defer base.Close()
	dir := filepath.Join(filepath.Dir(tinyModel(t)), "tiny-adapter")
	if err := base.LoadAdapter("debias", dir); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, base.LoadAdapter("debias", dir), StatusAdapterInvalid, "already loaded")
	_, err := base.WithAdapter("nope")
	wantStatus(t, err, StatusAdapterInvalid, "nope")
	tuned, err := base.WithAdapter("debias")
	if err != nil {
		t.Fatal(err)
	}
	defer tuned.Close()
	d, err := base.AdapterDelta(transcript, "teacher_uptake", "", "debias", nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tuned.Score(transcript, &ScoreOptions{Items: []string{"teacher_uptake"}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := got[0].Expected - d.ContextualExpected; diff > 1e-9 || diff < -1e-9 {
		t.Fatalf("adapter handle scores %v, delta says %v", got[0].Expected, d.ContextualExpected)
	}
	if d.AbsDelta < 1e-6 {
		t.Fatalf("the random adapter should move the score: %+v", d)
	}
}
