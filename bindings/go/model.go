package debiasguard

// #include <debias_guard.h>
import "C"

import (
	"fmt"
	"runtime"
	"sync"
)

// WeightFormat says how weights are held after loading (dg_weight_format_t).
type WeightFormat uint32

const (
	// WeightsAuto is dense f32 when the dequantized model fits in 3 GiB, else as stored.
	WeightsAuto WeightFormat = C.DG_WEIGHT_FORMAT_AUTO
	// WeightsDenseF32 dequantizes every matrix to f32 (fastest, most memory).
	WeightsDenseF32 WeightFormat = C.DG_WEIGHT_FORMAT_DENSE_F32
	// WeightsAsStored keeps quantized matrices quantized (least memory).
	WeightsAsStored WeightFormat = C.DG_WEIGHT_FORMAT_AS_STORED
)

// Options of Open. The zero value (or a nil *Options) gives the defaults.
type Options struct {
	// Threads is the size of the model's worker pool; 0 = one per core.
	Threads int
	// PrefillChunk is the number of tokens per prefill chunk; 0 = library default (512).
	PrefillChunk int
	// WeightFormat says how weights are held; default WeightsAuto.
	WeightFormat WeightFormat
	// AdapterPath is a PEFT LoRA adapter directory to load under the name "default" and run;
	// empty = the base model. More adapters: LoadAdapter and WithAdapter.
	AdapterPath string
	// PromptLayoutJSON replaces the prompt layout (keys system, user_template, answer_prefix,
	// label_separator); empty = default layout.
	PromptLayoutJSON string
	// PromptLayoutPath names a prompt layout JSON file instead; set at most one of the two.
	PromptLayoutPath string
}

// ModelInfo describes an open model.
type ModelInfo struct {
	Architecture  string  // general.architecture ("llama", "qwen2")
	ContextLength int     // context window in tokens
	VocabSize     int     // rows of the token embedding
	Threads       int     // worker threads of the model's pool
	LoadSeconds   float64 // time Open took to load the file
}

// Model is a loaded model, from a GGUF file or a Hugging Face directory (dg_model_t). Its methods
// may be called from many goroutines at once. Close it when done; a finalizer closes a forgotten
// one.
type Model struct {
	mu sync.RWMutex // read-held by calls, write-held by Close
	p  *C.dg_model_t
}

// Open loads a GGUF model file or a Hugging Face model directory; opts may be nil.
func Open(path string, opts *Options) (*Model, error) {
	if opts == nil {
		opts = &Options{}
	}
	if opts.Threads < 0 || opts.Threads > 1<<16 || opts.PrefillChunk < 0 || opts.PrefillChunk > 1<<30 {
		return nil, &Error{StatusInvalidArgument, fmt.Sprintf("threads %d or prefill chunk %d out of range", opts.Threads, opts.PrefillChunk)}
	}
	var cs cstrings
	defer cs.free()
	cpath, err := cs.str("path", path)
	if err != nil {
		return nil, err
	}
	o := C.dg_model_default_options()
	o.threads = C.uint32_t(opts.Threads)
	o.prefill_chunk = C.uint32_t(opts.PrefillChunk)
	o.weight_format = C.uint32_t(opts.WeightFormat)
	if o.adapter_path, err = cs.optStr("AdapterPath", opts.AdapterPath); err != nil {
		return nil, err
	}
	if o.prompt_layout_json, err = cs.optStr("PromptLayoutJSON", opts.PromptLayoutJSON); err != nil {
		return nil, err
	}
	if o.prompt_layout_path, err = cs.optStr("PromptLayoutPath", opts.PromptLayoutPath); err != nil {
		return nil, err
	}
	var p *C.dg_model_t
	var cerr *C.dg_error_t
	if err := takeError(C.dg_model_open(cpath, &o, &p, &cerr), cerr); err != nil {
		return nil, err
	}
	m := &Model{p: p}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// Close releases the model. It waits for calls in progress; later calls return ErrClosed.
// Closing twice is harmless.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p != nil {
		C.dg_model_free(m.p)
		m.p = nil
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

// use runs f with the C handle, holding the read lock so Close cannot free it meanwhile.
func (m *Model) use(f func(p *C.dg_model_t) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.p == nil {
		return ErrClosed
	}
	return f(m.p)
}

// Info describes the open model.
func (m *Model) Info() (ModelInfo, error) {
	var info ModelInfo
	err := m.use(func(p *C.dg_model_t) error {
		var i C.dg_model_info_t
		var cerr *C.dg_error_t
		if err := takeError(C.dg_model_get_info(p, &i, &cerr), cerr); err != nil {
			return err
		}
		info = ModelInfo{
			Architecture:  C.GoString(i.architecture),
			ContextLength: int(i.context_length),
			VocabSize:     int(i.vocab_size),
			Threads:       int(i.threads),
			LoadSeconds:   float64(i.load_seconds),
		}
		return nil
	})
	return info, err
}

// Version is the version of the linked library (dg_version).
func Version() string {
	return C.GoString(C.dg_version())
}

// HeaderVersion is the version of the C header this package was compiled with.
func HeaderVersion() string {
	return fmt.Sprintf("%d.%d.%d", C.DG_VERSION_MAJOR, C.DG_VERSION_MINOR, C.DG_VERSION_PATCH)
}
