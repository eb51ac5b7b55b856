// Command audit audits one transcript for spurious-context bias from Go.
//
// It links the installed library through pkg-config (`make install PREFIX=$HOME/.local`):
//
//	PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig go build -o audit .
//	LD_LIBRARY_PATH=$HOME/.local/lib ./audit ../../models/SmolLM2-135M-Instruct.Q4_1.gguf \
//	    ../../assets/transcripts/multiplication_drill.txt [ITEM_ID]
package main

import (
	"errors"
	"fmt"
	"os"

	debiasguard "debias-guard.dev/debiasguard"
)

func main() {
	if len(os.Args) < 3 || len(os.Args) > 4 {
		fmt.Fprintf(os.Stderr, "usage: %s MODEL.gguf TRANSCRIPT.txt [ITEM_ID]\n", os.Args[0])
		os.Exit(2)
	}
	item := "instructional_dialogue"
	if len(os.Args) == 4 {
		item = os.Args[3]
	}
	if err := run(os.Args[1], os.Args[2], item); err != nil {
		var e *debiasguard.Error
		if errors.As(err, &e) {
			fmt.Fprintf(os.Stderr, "error (%v): %s\n", e.Status, e.Message)
		} else {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
		os.Exit(1)
	}
}

func run(modelPath, transcriptPath, item string) error {
	text, err := os.ReadFile(transcriptPath)
	if err != nil {
		return err
	}
	fmt.Println("debias-guard", debiasguard.Version())
	model, err := debiasguard.Open(modelPath, nil)
	if err != nil {
		return err
	}
	defer model.Close()

	audit, err := model.Audit(string(text), &debiasguard.AuditOptions{
		Items:          []string{item},
		TranscriptName: transcriptPath,
	})
	if err != nil {
		return err
	}
	c := audit.Items[0].Plain
	fmt.Printf("%s: neutral score %.3f (label %s), noise floor %.3f, flag threshold %.3f\n",
		audit.Items[0].ItemID, c.Neutral.Expected, c.Neutral.ArgmaxLabel(), c.NoiseFloor, c.FlagThreshold)
	for _, cat := range c.Categories {
		flag := "no"
		if cat.Flagged {
			flag = "YES"
		}
		fmt.Printf("  %-16s %+8.3f %8.3f  %s\n", cat.ID, cat.MeanDelta, cat.MaxAbsDelta, flag)
	}
	fmt.Printf("worst: %s/%s moved the score by %.3f (threshold %.3f)\n",
		audit.WorstItemID, audit.WorstCategoryID, audit.WorstAbsDelta, audit.WorstFlagThreshold)
	verdict := "PASS"
	if audit.Flagged {
		verdict = "FLAGGED"
	}
	fmt.Println("verdict:", verdict)
	fmt.Println(audit.Summary)
	return nil
}
