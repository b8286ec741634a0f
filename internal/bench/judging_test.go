package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

// ingest64 is an ingest configuration at the issue's conditions for the
// throughput targets: 64 clients in a closed loop.
func ingest64(mode string) IngestConfig {
	return IngestConfig{Clients: targetClients, Duration: 5 * time.Second, Mode: mode, Batch: 1000, ContentBytes: 100}
}

// The throughput targets are judged only at 64 clients in a closed loop,
// and the inclusion target only at 10,000 msgs/s offered: the issue states
// them there, and a figure taken under other conditions is reported
// without a verdict.
func TestIngestTargetsOnlyUnderTheirConditions(t *testing.T) {
	judged := func(cfg IngestConfig, name string) bool {
		rep := NewScenarioReport("ingest", 1, nil)
		rep.Add(name, "", 1)
		ingestTargets(&cfg, rep, false)
		return rep.metric(name, "").Target != nil
	}
	for _, c := range []struct {
		what   string
		cfg    func(*IngestConfig)
		metric string
		want   bool
	}{
		{"single at 64 clients", func(*IngestConfig) {}, "single.committed_per_s", true},
		{"ratio at 64 clients", func(*IngestConfig) {}, "single.ratio_to_bare", true},
		{"batch at 64 clients", func(c *IngestConfig) { c.Mode = "batch" }, "batch.committed_per_s", true},
		{"single at 512 clients", func(c *IngestConfig) { c.Clients = 512 }, "single.committed_per_s", false},
		{"ratio at 512 clients", func(c *IngestConfig) { c.Clients = 512 }, "single.ratio_to_bare", false},
		{"batch at 8 clients", func(c *IngestConfig) { c.Mode = "batch"; c.Clients = 8 }, "batch.committed_per_s", false},
		{"single in open loop", func(c *IngestConfig) { c.Rate = 10000 }, "single.committed_per_s", false},
		{"inclusion in a closed loop", func(*IngestConfig) {}, "single.inclusion_p99", false},
		{"inclusion at 100 msgs/s", func(c *IngestConfig) { c.Rate = 100 }, "single.inclusion_p99", false},
		{"inclusion at 20,000 msgs/s", func(c *IngestConfig) { c.Rate = 20000 }, "single.inclusion_p99", false},
		{"inclusion at 10,000 msgs/s", func(c *IngestConfig) { c.Rate = 10000 }, "single.inclusion_p99", true},
		{"inclusion at 10,000 msgs/s, batches of 100, 16 clients", func(c *IngestConfig) { c.Mode = "batch"; c.Batch = 100; c.Rate = 10000; c.Clients = 16 }, "batch.inclusion_p99", true},
	} {
		cfg := ingest64("single")
		c.cfg(&cfg)
		if got := judged(cfg, c.metric); got != c.want {
			t.Errorf("%s: %s judged %v, want %v", c.what, c.metric, got, c.want)
		}
	}
}

// A run that broke an invariant is judged even when a later run fails and
// the scenario ends in an error, in ingest and in propagate; an invariant
// no run measured before the failure is not reported broken, and no speed
// target is set on the partial runs.
func TestInvariantsJudgedAfterAFailedRun(t *testing.T) {
	cfg := ingest64("both")
	rep := NewScenarioReport("ingest", 3, nil)
	rep.Add("single.acked_missing", "msgs", 5) // run 1 of single
	rep.Add("single.committed_twice", "msgs", 0)
	rep.Add("single.committed_per_s", "msg/s", 20000)
	ingestTargets(&cfg, rep, true) // run 2 failed
	rep.Finish()
	if m := rep.metric("single.acked_missing", ""); m.Target == nil || !m.Target.Every || *m.Pass {
		t.Errorf("acked_missing 5 before a failure: target %+v, pass %v; want a broken invariant", m.Target, m.Pass)
	}
	if m := rep.metric("single.committed_per_s", ""); m.Target != nil {
		t.Errorf("committed_per_s of a failed scenario judged: %+v", m.Target)
	}
	if m := rep.find("batch.acked_missing"); m != nil {
		t.Errorf("batch.acked_missing, which no run measured, is reported: %+v", m)
	}
	r := &Report{Scenarios: []*ScenarioReport{rep}}
	if _, _, broken := r.Counts(); broken != 1 {
		t.Errorf("invariants broken %d, want 1", broken)
	}

	pcfg := PropagateConfig{Peers: 3, MaxBlockMessages: 10000}
	rep = NewScenarioReport("propagate", 3, nil)
	rep.Add("not_reached", "blocks", 2)
	rep.Add("large.p99", "ms", 10)
	propagateTargets(&pcfg, rep, true)
	rep.Finish()
	if m := rep.metric("not_reached", ""); m.Target == nil || *m.Pass {
		t.Errorf("not_reached 2 before a failure: target %+v, pass %v; want a broken invariant", m.Target, m.Pass)
	}
	if m := rep.metric("large.p99", ""); m.Target != nil {
		t.Errorf("large.p99 of a failed scenario judged: %+v", m.Target)
	}
	if m := rep.find("full_block.peers_reached_by_gossip"); m != nil {
		t.Errorf("full_block.peers_reached_by_gossip, which no run measured, is reported: %+v", m)
	}
}

// The full block's invariant counts the peers reached by gossip, all of
// them.
func TestFullBlockTargetIsEveryPeerByGossip(t *testing.T) {
	cfg := PropagateConfig{Peers: 3, MaxBlockMessages: 10000}
	rep := NewScenarioReport("propagate", 1, nil)
	rep.Add("full_block.peers_reached_by_gossip", "peers", 2)
	propagateTargets(&cfg, rep, false)
	rep.Finish()
	m := rep.metric("full_block.peers_reached_by_gossip", "")
	if m.Target == nil || !m.Target.Every || m.Target.Value != 3 || *m.Pass {
		t.Errorf("2 of 3 peers by gossip: target %+v, pass %v; want a broken invariant of 3", m.Target, m.Pass)
	}
}

// ratio_to_bare is Kimura's committed/s over the bare endpoint's accepted
// (and committed) /s, not Kimura's accepted/s over it.
func TestRatioToBareIsCommittedOverBare(t *testing.T) {
	rep := NewScenarioReport("ingest", 1, nil)
	addBareFigures(rep, "single.", 9000, bareFigures{rate: 12000, p99: 5})
	if m := rep.metric("single.ratio_to_bare", ""); len(m.Values) != 1 || m.Values[0] != 0.75 {
		t.Errorf("ratio_to_bare %v, want [0.75] (9,000 committed/s ÷ 12,000/s)", m.Values)
	}
}

// A figure that sits near its target is printed with the digits that show
// which side it is on: a failing 0.5962 against ≥ 0.6 is not shown as
// 0.60, nor 14,999.6 msg/s against ≥ 15,000 as 15,000; figures without a
// target, or far from it, keep their unit's precision.
func TestTableShowsTheSideOfTheTarget(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		t    *Target
		want string
	}{
		{0.5962, "ratio", &Target{Op: ">=", Value: targetRatioToBare}, "0.596"},
		{0.59999, "ratio", &Target{Op: ">=", Value: targetRatioToBare}, "0.59999"},
		{0.6, "ratio", &Target{Op: ">=", Value: targetRatioToBare}, "0.60"},
		{0.5962, "ratio", nil, "0.60"},
		{0.71, "ratio", &Target{Op: ">=", Value: targetRatioToBare}, "0.71"},
		{14999.6, "msg/s", &Target{Op: ">=", Value: targetSingleCommitted}, "14,999.6"},
		{15000.4, "msg/s", &Target{Op: ">=", Value: targetSingleCommitted}, "15,000"},
		{150.04, "ms", &Target{Op: "<=", Value: 150}, "150.04"},
		{2.0004, "s", &Target{Op: "<=", Value: 2}, "2.0004"},
		{1234567, "msgs", nil, "1,234,567"},
		{-0.5, "msgs", &Target{Op: "==", Value: 0}, "-0.5"},
		{0, "msgs", &Target{Op: "==", Value: 0}, "0"},
		{0.4, "msgs", &Target{Op: "==", Value: 0}, "0.4"},
	} {
		if got := formatJudged(c.v, c.unit, c.t); got != c.want {
			t.Errorf("formatJudged(%v, %q, %+v) = %q, want %q", c.v, c.unit, c.t, got, c.want)
		}
	}

	rep := NewScenarioReport("ingest", 1, nil)
	rep.Add("single.ratio_to_bare", "ratio", 0.5962)
	rep.Target("single.ratio_to_bare", "ratio", Target{Op: ">=", Value: targetRatioToBare})
	rep.Finish()
	var b strings.Builder
	if err := (&Report{Scenarios: []*ScenarioReport{rep}}).WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "0.596") || strings.Contains(b.String(), "0.60 ") {
		t.Errorf("the table does not show the failing ratio as 0.596:\n%s", b.String())
	}
}

// The restart and catchup targets are given only to a chain of the size
// the issue states them for, up to 1% over (a chain a leader built ends a
// few blocks past --blocks), and with messages; any other chain's figure
// has no verdict.
func TestChainTargetsOnlyAtTheIssueSizes(t *testing.T) {
	for _, c := range []struct {
		height       uint64
		withMessages bool
		sizes        []sizeTarget
		want         float64 // the target's seconds; NaN for none
	}{
		{100_000, true, restartTargets, targetRestart100k},
		{100_012, true, restartTargets, targetRestart100k},
		{101_000, true, restartTargets, targetRestart100k},
		{101_001, true, restartTargets, math.NaN()},
		{99_999, true, restartTargets, math.NaN()},
		{200, true, restartTargets, math.NaN()},
		{500_000, true, restartTargets, math.NaN()},
		{1_000_000, true, restartTargets, targetRestart1M},
		{1_000_037, true, restartTargets, targetRestart1M},
		{1_000_000, false, restartTargets, math.NaN()},
		{100_000, false, restartTargets, math.NaN()},
		{10_000, true, catchupTargets, targetCatchupSeconds},
		{10_037, true, catchupTargets, targetCatchupSeconds},
		{60, true, catchupTargets, math.NaN()},
		{100_000, true, catchupTargets, math.NaN()},
		{10_000, false, catchupTargets, math.NaN()},
	} {
		tg, ok := chainSizeTarget(c.height, c.withMessages, c.sizes)
		if ok != !math.IsNaN(c.want) || (ok && (tg.Value != c.want || tg.Op != "<=")) {
			t.Errorf("chain of %d blocks (messages %v): target %+v, %v; want %v s", c.height, c.withMessages, tg, ok, c.want)
		}
	}

	// A chain built without messages is not the issue's; a borrowed one
	// is judged by its height alone.
	cfg := ChainConfig{Blocks: 100_000, MessagesPerBlock: 0}
	if (&builtChain{height: 100_000}).withMessages(cfg) {
		t.Error("a chain built with --messages-per-block 0 counts as holding messages")
	}
	if !(&builtChain{borrowed: true}).withMessages(cfg) {
		t.Error("a borrowed chain is not judged")
	}
	cfg.MessagesPerBlock = 10
	if !(&builtChain{height: 100_000, messages: 1_000_000}).withMessages(cfg) {
		t.Error("a chain built with 10 messages a block does not count as holding messages")
	}

	rep := NewScenarioReport("restart", 1, nil)
	rep.Add("exec_to_health", "s", 0.1)
	judgeChainTime(rep, "exec_to_health", 200, true, restartTargets)
	if m := rep.metric("exec_to_health", ""); m.Target != nil || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "without a verdict") {
		t.Errorf("a 200-block restart: target %+v, notes %q; want none and a note saying why", m.Target, rep.Notes)
	}
}

// A chain written by --build direct never held the pending: records a
// leader writes and deletes for every message, so its bytes on disk get no
// verdict; a leader-built chain of the same size does.
func TestDirectChainHasNoDiskVerdict(t *testing.T) {
	for _, c := range []struct {
		builder string
		want    bool
	}{{"direct", false}, {"leader", true}} {
		cfg := ChainConfig{Blocks: 100_000, MessagesPerBlock: 10, ContentBytes: targetDiskContent, Builder: c.builder}
		bc := &builtChain{height: 100_000, messages: targetScaleMessages, disk: 250 * targetScaleMessages, apparent: 250 * targetScaleMessages}
		rep := NewScenarioReport("restart", 1, nil)
		addChainMetrics(rep, bc, cfg)
		m := rep.metric("disk_per_msg", "")
		if len(m.Values) != 1 || (m.Target != nil) != c.want {
			t.Errorf("--build %s: disk_per_msg %v, target %+v; want a figure, judged %v", c.builder, m.Values, m.Target, c.want)
		}
	}
}
