package debiasguard

// #include <stdlib.h>
// #include <debias_guard.h>
import "C"

import (
	"context"
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Split selects which probe wordings an audit uses (dg_split_t).
type Split uint32

const (
	SplitAll     Split = C.DG_SPLIT_ALL     // every wording (default)
	SplitTrain   Split = C.DG_SPLIT_TRAIN   // only wordings marked train
	SplitHeldout Split = C.DG_SPLIT_HELDOUT // only wordings marked heldout
)

// AuditMode says how an audit reads ratings (dg_audit_mode_t).
type AuditMode uint32

const (
	ModeDirect   AuditMode = C.DG_AUDIT_MODE_DIRECT   // right after the prompt (default)
	ModeReasoned AuditMode = C.DG_AUDIT_MODE_REASONED // after a short generated reasoning
)

// AuditOptions are the optional inputs of Audit (nil = defaults). Zero numeric fields take
// the library's defaults: AbsThreshold 0.5, K 3, MaxReasoningTokens 96, TopP 1.
type AuditOptions struct {
	Rubric             *Rubric  // nil = built-in rubric
	Items              []string // item ids (distinct); empty = every item
	ProbesPath         string   // probe catalog JSON; empty = built-in catalog
	TranscriptName     string   // name in the report; empty = "<inline>"
	Split              Split
	AbsThreshold       float64 // smallest max |delta| that can be flagged (scale points)
	K                  float64 // a category must also reach K x the noise floor
	MitigationBaseline bool    // also run every prompt with the mitigation instruction
	Mode               AuditMode
	MaxReasoningTokens int     // reasoned mode: most reasoning tokens per variant
	Temperature        float64 // reasoned mode: 0 = greedy
	TopP               float64 // reasoned mode: nucleus threshold
	Seed               uint64  // reasoned mode: sampler seed
	HTMLPath           string  // if set, the HTML report is written there
}

// AuditCategory summarises one probe category under one condition.
type AuditCategory struct {
	ID, Name        string
	Wordings        int
	MeanDelta       float64
	MaxAbsDelta     float64 // compared with the condition's FlagThreshold
	HighMeanDelta   float64
	LowMeanDelta    float64
	PoleGap         float64
	MeanWasserstein float64
	ArgmaxChanges   int
	Flagged         bool
}

// AuditCondition is one rubric item under one prompt condition.
type AuditCondition struct {
	Mitigated          bool
	Neutral            Distribution
	NoiseFloor         float64 // mean |delta| of the control sentences
	ControlMaxAbsDelta float64
	FlagThreshold      float64 // max(AbsThreshold, K x NoiseFloor)
	Flagged            bool
	Categories         []AuditCategory
}

// AuditItem holds the results for one rubric item.
type AuditItem struct {
	ItemID    string
	Plain     AuditCondition  // the verdict is based on this condition
	Mitigated *AuditCondition // set when MitigationBaseline was requested
}

// Audit is an audit's outcome. The Worst fields name the category with the largest |delta|
// over every item's plain condition, flagged or not.
type Audit struct {
	Flagged            bool // verdict: any category reached its threshold
	Flags              int  // flagged (item, category) pairs
	WorstItemID        string
	WorstCategoryID    string
	WorstAbsDelta      float64
	WorstFlagThreshold float64
	NoiseFloor         float64 // noise floor of the worst category's item
	Items              []AuditItem
	Summary            string
	Warnings           []string
	ReportJSON         string // the complete versioned JSON report
}

func goCondition(c *C.dg_audit_condition_t) AuditCondition {
	out := AuditCondition{
		Mitigated:          bool(c.mitigated),
		Neutral:            goDistribution(&c.neutral),
		NoiseFloor:         float64(c.noise_floor),
		ControlMaxAbsDelta: float64(c.control_max_abs_delta),
		FlagThreshold:      float64(c.flag_threshold),
		Flagged:            bool(c.flagged),
	}
	for _, k := range unsafe.Slice(c.categories, int(c.n_categories)) {
		out.Categories = append(out.Categories, AuditCategory{
			ID:              C.GoString(k.id),
			Name:            C.GoString(k.name),
			Wordings:        int(k.wordings),
			MeanDelta:       float64(k.mean_delta),
			MaxAbsDelta:     float64(k.max_abs_delta),
			HighMeanDelta:   float64(k.high_mean_delta),
			LowMeanDelta:    float64(k.low_mean_delta),
			PoleGap:         float64(k.pole_gap),
			MeanWasserstein: float64(k.mean_wasserstein),
			ArgmaxChanges:   int(k.argmax_changes),
			Flagged:         bool(k.flagged),
		})
	}
	return out
}

func goAudit(a *C.dg_audit_t) *Audit {
	out := &Audit{
		Flagged:            bool(a.flagged),
		Flags:              int(a.n_flags),
		WorstItemID:        C.GoString(a.worst_item_id),
		WorstCategoryID:    C.GoString(a.worst_category_id),
		WorstAbsDelta:      float64(a.worst_abs_delta),
		WorstFlagThreshold: float64(a.worst_flag_threshold),
		NoiseFloor:         float64(a.noise_floor),
		Summary:            C.GoString(a.summary),
		ReportJSON:         C.GoStringN(a.report_json, C.int(a.report_json_len)),
	}
	items := unsafe.Slice(a.items, int(a.n_items))
	for i := range items {
		item := AuditItem{ItemID: C.GoString(items[i].item_id), Plain: goCondition(&items[i].plain)}
		if items[i].mitigated != nil {
			m := goCondition(items[i].mitigated)
			item.Mitigated = &m
		}
		out.Items = append(out.Items, item)
	}
	for _, w := range unsafe.Slice(a.warnings, int(a.n_warnings)) {
		out.Warnings = append(out.Warnings, C.GoString(w))
	}
	return out
}

// Audit scores each item without context, with every probe wording and with every control
// sentence in one prefix-shared pass, and flags each category whose largest |delta| reaches
// max(AbsThreshold, K x noise floor). With the built-in catalog that is about 65 prompts per item.
func (m *Model) Audit(transcript string, opts *AuditOptions) (*Audit, error) {
	return m.AuditContext(context.Background(), transcript, opts)
}

// AuditContext is Audit, cancelled when ctx is done: the library stops at its next check
// (between forward passes of the model) and the call returns ctx.Err().
func (m *Model) AuditContext(ctx context.Context, transcript string, opts *AuditOptions) (*Audit, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts == nil {
		opts = &AuditOptions{}
	}
	if opts.MaxReasoningTokens < 0 || opts.MaxReasoningTokens > 1<<20 {
		return nil, &Error{StatusInvalidArgument, fmt.Sprintf("MaxReasoningTokens %d out of range", opts.MaxReasoningTokens)}
	}
	var out *Audit
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
			o := C.dg_audit_default_options()
			if o.probes_path, err = cs.optStr("ProbesPath", opts.ProbesPath); err != nil {
				return err
			}
			if o.transcript_name, err = cs.optStr("TranscriptName", opts.TranscriptName); err != nil {
				return err
			}
			o.split = C.uint32_t(opts.Split)
			if opts.AbsThreshold != 0 {
				o.abs_threshold = C.double(opts.AbsThreshold)
			}
			if opts.K != 0 {
				o.k = C.double(opts.K)
			}
			o.mitigation_baseline = C.bool(opts.MitigationBaseline)
			o.mode = C.uint32_t(opts.Mode)
			if opts.MaxReasoningTokens != 0 {
				o.max_reasoning_tokens = C.uint32_t(opts.MaxReasoningTokens)
			}
			o.temperature = C.double(opts.Temperature)
			if opts.TopP != 0 {
				o.top_p = C.double(opts.TopP)
			}
			o.seed = C.uint64_t(opts.Seed)
			html, err := cs.optStr("HTMLPath", opts.HTMLPath)
			if err != nil {
				return err
			}
			// The flag lives in C memory (a Go pointer may not be stored in C-visible memory);
			// a goroutine sets it when ctx is done.
			flag := (*C.int32_t)(C.calloc(1, C.size_t(unsafe.Sizeof(C.int32_t(0)))))
			defer C.free(unsafe.Pointer(flag))
			o.cancel = flag
			finished := make(chan struct{})
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				select {
				case <-ctx.Done():
					atomic.StoreInt32((*int32)(unsafe.Pointer(flag)), 1)
				case <-finished:
				}
			}()
			var a *C.dg_audit_t
			var cerr *C.dg_error_t
			status := C.dg_audit(mp, rp, ids, n, ct, &o, &a, &cerr)
			close(finished)
			<-watched
			if status == C.DG_STATUS_CANCELLED && ctx.Err() != nil {
				C.dg_error_free(cerr)
				return ctx.Err()
			}
			if err := takeError(status, cerr); err != nil {
				return err
			}
			defer C.dg_audit_free(a)
			if html != nil {
				if err := takeError(C.dg_audit_write_html(a, html, &cerr), cerr); err != nil {
					return err
				}
			}
			out = goAudit(a)
			return nil
		})
	})
	return out, err
}
