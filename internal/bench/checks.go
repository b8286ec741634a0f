package bench

import (
	"fmt"
	"math"
	"time"
)

// maxDuration bounds the scenarios' durations: far more than a benchmark
// needs, and far from where arithmetic on a time.Duration overflows.
const maxDuration = 24 * time.Hour

// checkRate refuses a rate that is not a finite number: NaN passes every
// comparison with a bound, and either would end up in the JSON report,
// which cannot hold them.
func checkRate(rate float64) error {
	if math.IsNaN(rate) || math.IsInf(rate, 0) {
		return fmt.Errorf("--rate %v: want a finite number", rate)
	}
	return nil
}

// NoWorkError is a run that did not do the work it measures: nothing
// acknowledged, none of its messages committed, no block of the size it
// times, no chain to catch up. Its figures are empty, and a target without
// figures is not met, so such a run is an error rather than a quiet pass.
type NoWorkError struct {
	Run  string // e.g. "ingest single run 2"
	What string // what did not happen
}

func (e *NoWorkError) Error() string { return "bench: " + e.Run + " did no work: " + e.What }

// checkWork returns a NoWorkError when a run had none of its messages
// acknowledged, or none committed; sent says what it sent.
func checkWork(run string, acked, committed int, sent string) error {
	switch {
	case acked == 0:
		return &NoWorkError{Run: run, What: "no message was acknowledged (" + sent + ")"}
	case committed == 0:
		return &NoWorkError{Run: run, What: fmt.Sprintf("none of the %d messages acknowledged is in a block", acked)}
	}
	return nil
}

// loadSummary is what a load sent, for checkWork.
func loadSummary(lr *LoadResult) string {
	s := fmt.Sprintf("%d sent, %d refused, %d unanswered", lr.Sent, lr.Refused, lr.Failed)
	if lr.FirstError != "" {
		s += ", first error: " + lr.FirstError
	}
	return s
}

// countTrue is how many of bs are true.
func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// addChainChecks records, under prefix, what reading the chain back found
// about the messages a run sent: how many were acknowledged but are in no
// block, and how many entries repeat a message already found. Both are
// invariants (chainTargets). It returns the first.
func addChainChecks(rep *ScenarioReport, prefix string, in *inclusion, acked func(i int) bool) int {
	missing := in.ackedMissing(acked)
	rep.Add(prefix+"acked_missing", "msgs", float64(missing))
	rep.Add(prefix+"committed_twice", "msgs", float64(in.twice))
	return missing
}

// chainTargets sets the invariants addChainChecks measures: every
// acknowledged message is in the chain, and none is in it twice. failed is
// whether the scenario ended in an error (see ScenarioReport.Invariant).
func chainTargets(rep *ScenarioReport, prefix string, failed bool) {
	rep.Invariant(prefix+"acked_missing", "msgs", Target{Op: "==", Value: 0}, failed)
	rep.Invariant(prefix+"committed_twice", "msgs", Target{Op: "==", Value: 0}, failed)
}
