package debiasguard

// #include <debias_guard.h>
import "C"

import "unsafe"

// Distribution is the model's probability distribution over the labels of one rubric item's
// scale (dg_distribution_t).
type Distribution struct {
	ItemID       string
	Labels       []string  // scale labels, in order
	Values       []float64 // numeric value of each label
	Probs        []float64 // probability of each label (sums to 1)
	Expected     float64   // sum of Probs[i]*Values[i], in scale points
	LabelMass    float64   // label probability mass before renormalising (0-1)
	Argmax       int       // index of the most probable label
	PromptTokens int       // tokens in the prompt
}

// ArgmaxLabel is the most probable label.
func (d *Distribution) ArgmaxLabel() string { return d.Labels[d.Argmax] }

func goDistribution(d *C.dg_distribution_t) Distribution {
	n := int(d.n_labels)
	out := Distribution{
		ItemID:       C.GoString(d.item_id),
		Labels:       make([]string, n),
		Values:       make([]float64, n),
		Probs:        make([]float64, n),
		Expected:     float64(d.expected),
		LabelMass:    float64(d.label_mass),
		Argmax:       int(d.argmax),
		PromptTokens: int(d.prompt_tokens),
	}
	labels := unsafe.Slice(d.labels, n)
	values := unsafe.Slice(d.values, n)
	probs := unsafe.Slice(d.probs, n)
	for i := 0; i < n; i++ {
		out.Labels[i] = C.GoString(labels[i])
		out.Values[i] = float64(values[i])
		out.Probs[i] = float64(probs[i])
	}
	return out
}

// ScoreOptions selects what Score rates. A nil *ScoreOptions scores every item of the built-in
// rubric without context.
type ScoreOptions struct {
	Rubric   *Rubric  // nil = built-in rubric
	Items    []string // item ids in the order wanted; empty = every item
	Context  string   // sentence added after the question; empty = none
	Mitigate bool     // add the instruction to ignore irrelevant information
}

// Score rates a transcript on rubric items in one pass (the transcript is prefilled once) and
// returns one distribution per item.
func (m *Model) Score(transcript string, opts *ScoreOptions) ([]Distribution, error) {
	if opts == nil {
		opts = &ScoreOptions{}
	}
	var out []Distribution
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
			cc, err := cs.optStr("Context", opts.Context)
			if err != nil {
				return err
			}
			var s *C.dg_scores_t
			var cerr *C.dg_error_t
			st := C.dg_score(mp, rp, ids, n, ct, cc, C.bool(opts.Mitigate), &s, &cerr)
			if err := takeError(st, cerr); err != nil {
				return err
			}
			defer C.dg_scores_free(s)
			ds := unsafe.Slice(s.distributions, int(s.count))
			for i := range ds {
				out = append(out, goDistribution(&ds[i]))
			}
			return nil
		})
	})
	return out, err
}
