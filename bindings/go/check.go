package debiasguard

// #include <debias_guard.h>
import "C"

import "unsafe"

// CheckOptions are the optional inputs of Check (nil = defaults). A zero AbsThreshold takes
// the default (0.5 scale points).
type CheckOptions struct {
	Rubric       *Rubric  // nil = built-in rubric
	Items        []string // item ids; empty = every item
	AbsThreshold float64  // flag when |delta| reaches this; 0 = default 0.5
	Mitigate     bool     // add the instruction to ignore irrelevant information
}

// CheckResult is the runtime check of one rubric item.
type CheckResult struct {
	ItemID       string
	Context      string       // the context as used (trimmed)
	Contextual   Distribution // the score with the context (what the host asked for)
	Neutral      Distribution // the score without it
	Delta        BiasDelta
	Flagged      bool    // Delta.AbsDelta >= AbsThreshold
	AbsThreshold float64 // the threshold used
}

// Check scores each item with and without context in one pass and flags a large difference:
// the runtime check a host runs on every score it stores.
func (m *Model) Check(transcript, context string, opts *CheckOptions) ([]CheckResult, error) {
	if opts == nil {
		opts = &CheckOptions{}
	}
	var out []CheckResult
	err := m.use(func(mp *C.dg_model_t) error {
		return withRubric(opts.Rubric, func(rp *C.dg_rubric_t) error {
			var cs cstrings
			defer cs.free()
			ids, n, err := cs.list("Items", opts.Items)
			if err != nil {
				return err
			}
			ct, err := cs.str("transcript", transcript)
			if err != nil {
				return err
			}
			cc, err := cs.str("context", context)
			if err != nil {
				return err
			}
			o := C.dg_check_default_options()
			if opts.AbsThreshold != 0 {
				o.abs_threshold = C.double(opts.AbsThreshold)
			}
			o.mitigate = C.bool(opts.Mitigate)
			var c *C.dg_checks_t
			var cerr *C.dg_error_t
			if err := takeError(C.dg_check(mp, rp, ids, n, ct, cc, &o, &c, &cerr), cerr); err != nil {
				return err
			}
			defer C.dg_checks_free(c)
			results := unsafe.Slice(c.results, int(c.count))
			for i := range results {
				r := &results[i]
				out = append(out, CheckResult{
					ItemID:       C.GoString(r.item_id),
					Context:      C.GoString(r.context),
					Contextual:   goDistribution(&r.contextual),
					Neutral:      goDistribution(&r.neutral),
					Delta:        goDelta(&r.delta),
					Flagged:      bool(r.flagged),
					AbsThreshold: float64(r.abs_threshold),
				})
			}
			return nil
		})
	})
	return out, err
}
