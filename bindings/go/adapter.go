package debiasguard

// #include <debias_guard.h>
import "C"

import "runtime"

// LoadAdapter loads a PEFT LoRA adapter directory (adapter_config.json +
// adapter_model.safetensors) into the model under name. Every handle on the same weights (see
// WithAdapter) can then run it; the base weights are not copied.
func (m *Model) LoadAdapter(name, dir string) error {
	return m.use(func(p *C.dg_model_t) error {
		var cs cstrings
		defer cs.free()
		cn, err := cs.str("name", name)
		if err != nil {
			return err
		}
		cd, err := cs.str("dir", dir)
		if err != nil {
			return err
		}
		var cerr *C.dg_error_t
		return takeError(C.dg_model_load_adapter(p, cn, cd, &cerr), cerr)
	})
}

// UnloadAdapter removes adapter name from the model's weights (handles that already run it
// keep it).
func (m *Model) UnloadAdapter(name string) error {
	return m.use(func(p *C.dg_model_t) error {
		var cs cstrings
		defer cs.free()
		cn, err := cs.str("name", name)
		if err != nil {
			return err
		}
		var cerr *C.dg_error_t
		return takeError(C.dg_model_unload_adapter(p, cn, &cerr), cerr)
	})
}

// WithAdapter returns a new Model handle on the same weights that runs adapter name ("" = the
// base model). Close it when done; handles are independent of each other.
func (m *Model) WithAdapter(name string) (*Model, error) {
	var out *Model
	err := m.use(func(p *C.dg_model_t) error {
		var cs cstrings
		defer cs.free()
		cn, err := cs.optStr("name", name)
		if err != nil {
			return err
		}
		var h *C.dg_model_t
		var cerr *C.dg_error_t
		if err := takeError(C.dg_model_with_adapter(p, cn, &h, &cerr), cerr); err != nil {
			return err
		}
		out = &Model{p: h}
		runtime.SetFinalizer(out, (*Model).Close)
		return nil
	})
	return out, err
}

// AdapterDelta scores one item on the base model and with adapter name, in one call: Neutral*
// fields describe the base model, Contextual* fields the adapter. context may be "" (none).
func (m *Model) AdapterDelta(transcript, item, context, name string, opts *DeltaOptions) (BiasDelta, error) {
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
			cc, err := cs.optStr("context", context)
			if err != nil {
				return err
			}
			cn, err := cs.str("name", name)
			if err != nil {
				return err
			}
			var d C.dg_bias_delta_t
			var cerr *C.dg_error_t
			st := C.dg_adapter_delta(mp, rp, ci, ct, cc, C.bool(opts.Mitigate), cn, &d, &cerr)
			if err := takeError(st, cerr); err != nil {
				return err
			}
			out = goDelta(&d)
			return nil
		})
	})
	return out, err
}
