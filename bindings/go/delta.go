package debiasguard

// #include <debias_guard.h>
import "C"

import "unsafe"

// BiasDelta is the effect of one context on one score, in scale points (dg_bias_delta_t).
type BiasDelta struct {
	NeutralExpected     float64 // expected score without the context
	ContextualExpected  float64 // expected score with the context
	Delta               float64 // ContextualExpected - NeutralExpected
	AbsDelta            float64 // |Delta|
	Wasserstein         float64 // earth mover's distance between the two distributions
	ArgmaxChanged       bool    // whether the most probable label differs
	NeutralLabelMass    float64 // label mass of the neutral prompt (0-1)
	ContextualLabelMass float64 // label mass of the prompt with the context (0-1)
}

func goDelta(d *C.dg_bias_delta_t) BiasDelta {
	return BiasDelta{
		NeutralExpected:     float64(d.neutral_expected),
		ContextualExpected:  float64(d.contextual_expected),
		Delta:               float64(d.delta),
		AbsDelta:            float64(d.abs_delta),
		Wasserstein:         float64(d.wasserstein),
		ArgmaxChanged:       bool(d.argmax_changed),
		NeutralLabelMass:    float64(d.neutral_label_mass),
		ContextualLabelMass: float64(d.contextual_label_mass),
	}
}

// DeltaOptions are the optional inputs of BiasDelta and BiasDeltas (nil = defaults).
type DeltaOptions struct {
	Rubric   *Rubric // nil = built-in rubric
	Mitigate bool    // add the instruction to ignore irrelevant information to every prompt
}

// DeltaBatch is one item's neutral score and its score under each of several contexts.
type DeltaBatch struct {
	Neutral         Distribution
	Contextual      []Distribution // one per context, in order
	Deltas          []BiasDelta    // one per context, in order
	TokensEvaluated int            // tokens run through the model
	TokensRequested int            // tokens the sequences hold (the cost without sharing)
}

// BiasDelta measures how far one context moves the score of one rubric item.
func (m *Model) BiasDelta(transcript, item, context string, opts *DeltaOptions) (BiasDelta, error) {
	if opts == nil {
		opts = &DeltaOptions{}
	}
	var out BiasDelta
	err := m.use(func(mp *C.dg_model_t) error {
		return withRubric(opts.Rubric, func(rp *C.dg_rubric_t) error {
			var cs cstrings
			defer cs.free()
			ci, err := cs.str("item", item)
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
			var d C.dg_bias_delta_t
			var cerr *C.dg_error_t
			st := C.dg_bias_delta(mp, rp, ci, ct, cc, C.bool(opts.Mitigate), &d, &cerr)
			if err := takeError(st, cerr); err != nil {
				return err
			}
			out = goDelta(&d)
			return nil
		})
	})
	return out, err
}

// BiasDeltas measures several contexts against one neutral score, in one pass.
func (m *Model) BiasDeltas(transcript, item string, contexts []string, opts *DeltaOptions) (*DeltaBatch, error) {
	if opts == nil {
		opts = &DeltaOptions{}
	}
	var out *DeltaBatch
	err := m.use(func(mp *C.dg_model_t) error {
		return withRubric(opts.Rubric, func(rp *C.dg_rubric_t) error {
			var cs cstrings
			defer cs.free()
			ci, err := cs.str("item", item)
			if err != nil {
				return err
			}
			ct, err := cs.str("transcript", transcript)
			if err != nil {
				return err
			}
			cc, n, err := cs.list("contexts", contexts)
			if err != nil {
				return err
			}
			var b *C.dg_delta_batch_t
			var cerr *C.dg_error_t
			st := C.dg_bias_deltas(mp, rp, ci, ct, cc, n, C.bool(opts.Mitigate), &b, &cerr)
			if err := takeError(st, cerr); err != nil {
				return err
			}
			defer C.dg_delta_batch_free(b)
			out = &DeltaBatch{
				Neutral:         goDistribution(&b.neutral),
				TokensEvaluated: int(b.tokens_evaluated),
				TokensRequested: int(b.tokens_requested),
			}
			ds := unsafe.Slice(b.contextual, int(b.count))
			deltas := unsafe.Slice(b.deltas, int(b.count))
			for i := range ds {
				out.Contextual = append(out.Contextual, goDistribution(&ds[i]))
				out.Deltas = append(out.Deltas, goDelta(&deltas[i]))
			}
			return nil
		})
	})
	return out, err
}
