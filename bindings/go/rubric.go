package debiasguard

// #include <debias_guard.h>
import "C"

import (
	"runtime"
	"sync"
)

// Rubric is a set of rubric items (dg_rubric_t): what is rated, on which scale. Calls take a
// *Rubric where nil means the built-in rubric. Safe for concurrent use.
type Rubric struct {
	mu sync.RWMutex
	p  *C.dg_rubric_t
}

func newRubric(p *C.dg_rubric_t) *Rubric {
	r := &Rubric{p: p}
	runtime.SetFinalizer(r, (*Rubric).Close)
	return r
}

// BuiltinRubric returns a copy of the built-in rubric (three classroom dimensions, 1 to 7).
func BuiltinRubric() (*Rubric, error) {
	var p *C.dg_rubric_t
	var cerr *C.dg_error_t
	if err := takeError(C.dg_rubric_builtin(&p, &cerr), cerr); err != nil {
		return nil, err
	}
	return newRubric(p), nil
}

// LoadRubric reads and validates a rubric JSON file.
func LoadRubric(path string) (*Rubric, error) {
	var cs cstrings
	defer cs.free()
	cpath, err := cs.str("path", path)
	if err != nil {
		return nil, err
	}
	var p *C.dg_rubric_t
	var cerr *C.dg_error_t
	if err := takeError(C.dg_rubric_load(cpath, &p, &cerr), cerr); err != nil {
		return nil, err
	}
	return newRubric(p), nil
}

// ParseRubric parses and validates rubric JSON text.
func ParseRubric(json string) (*Rubric, error) {
	var cs cstrings
	defer cs.free()
	cjson, err := cs.str("json", json)
	if err != nil {
		return nil, err
	}
	var p *C.dg_rubric_t
	var cerr *C.dg_error_t
	if err := takeError(C.dg_rubric_parse(cjson, &p, &cerr), cerr); err != nil {
		return nil, err
	}
	return newRubric(p), nil
}

// ItemIDs lists the item ids in rubric order (nil after Close).
func (r *Rubric) ItemIDs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.p == nil {
		return nil
	}
	n := int(C.dg_rubric_item_count(r.p))
	ids := make([]string, n)
	for i := range ids {
		ids[i] = C.GoString(C.dg_rubric_item_id(r.p, C.size_t(i)))
	}
	return ids
}

// Close releases the rubric; closing twice is harmless.
func (r *Rubric) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil {
		C.dg_rubric_free(r.p)
		r.p = nil
		runtime.SetFinalizer(r, nil)
	}
	return nil
}

// withRubric runs f with the C handle of r (NULL for a nil *Rubric = built-in rubric).
func withRubric(r *Rubric, f func(p *C.dg_rubric_t) error) error {
	if r == nil {
		return f(nil)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.p == nil {
		return ErrClosed
	}
	return f(r.p)
}
