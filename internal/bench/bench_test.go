package bench

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// fasthttp's client leaves a janitor per host client that ends by itself
// once its connections are closed and a sleep of up to 10 s is over.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}

func TestParseLogLine(t *testing.T) {
	l := ParseLogLine(`time=2026-11-25T19:33:54.089Z level=INFO msg="Produced block 17 with 501 messages"`)
	if want := time.Date(2026, 11, 25, 19, 33, 54, 89e6, time.UTC); !l.Time.Equal(want) {
		t.Errorf("time %v, want %v", l.Time, want)
	}
	if h, n, ok := l.ProducedBlock(); !ok || h != 17 || n != 501 {
		t.Errorf("ProducedBlock() = %d, %d, %v; want 17, 501, true", h, n, ok)
	}

	l = ParseLogLine(`time=2026-11-25T19:33:53.979Z level=INFO msg="Serving HTTP API" addr=127.0.0.1:46069 peer_id=12D3 p2p_addrs=[/ip4/127.0.0.1/tcp/36991/p2p/12D3]`)
	if l.Msg != "Serving HTTP API" || l.Attrs["addr"] != "127.0.0.1:46069" || l.Attrs["p2p_addrs"] != "[/ip4/127.0.0.1/tcp/36991/p2p/12D3]" {
		t.Errorf("Serving line parsed as %q %v", l.Msg, l.Attrs)
	}

	l = ParseLogLine(`time=2026-11-25T19:36:30.001+01:00 level=DEBUG msg="Stored blocks" from=18 to=20`)
	if from, to, ok := l.StoredBlocks(); !ok || from != 18 || to != 20 {
		t.Errorf("StoredBlocks() = %d, %d, %v; want 18, 20, true", from, to, ok)
	}

	l = ParseLogLine(`time=2026-11-25T19:36:29.997Z level=DEBUG msg="Received block by gossip" height=18 bytes=180 messages=0`)
	if h, ok := l.ReceivedBlock(); !ok || h != 18 {
		t.Errorf("ReceivedBlock() = %d, %v; want 18, true", h, ok)
	}
	l = ParseLogLine(`time=2026-11-25T19:36:29.997Z level=DEBUG msg="Received block by gossip"`)
	if _, ok := l.ReceivedBlock(); ok {
		t.Error("a receipt without height parsed")
	}

	l = ParseLogLine(`time=2026-11-25T19:36:30.001Z level=INFO msg="Chain integrity verified: 2023 blocks" took=43.5ms`)
	if n, took, ok := l.ChainVerified(); !ok || n != 2023 || took != 43500*time.Microsecond {
		t.Errorf("ChainVerified() = %d, %v, %v; want 2023, 43.5ms, true", n, took, ok)
	}

	l = ParseLogLine(`time=2026-11-25T19:36:30.001Z level=WARN msg="quoted \"inner\" text" err="a b c"`)
	if l.Msg != `quoted "inner" text` || l.Attrs["err"] != "a b c" {
		t.Errorf("quoted values parsed as %q %v", l.Msg, l.Attrs)
	}

	for _, s := range []string{"", "panic: something", `msg="unterminated`} {
		l := ParseLogLine(s)
		if _, _, ok := l.ProducedBlock(); ok {
			t.Errorf("%q parsed as a produced block", s)
		}
		if !l.When().IsZero() {
			t.Errorf("%q has a time", s)
		}
	}
}

func TestPercentileAndMedian(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	for _, c := range []struct{ p, want float64 }{{50, 3}, {99, 5}, {100, 5}, {20, 1}, {21, 2}} {
		if got := Percentile(append([]float64(nil), xs...), c.p); got != c.want {
			t.Errorf("Percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if !math.IsNaN(Percentile(nil, 50)) || !math.IsNaN(Median(nil)) {
		t.Error("empty input should give NaN")
	}
	if got := Median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("Median = %v, want 2.5", got)
	}
}

func TestReportTargets(t *testing.T) {
	r := NewScenarioReport("s", 3, nil)
	for _, v := range []float64{10, 30, 20} {
		r.Add("rate", "msg/s", v)
		r.Add("missing", "msgs", 0)
	}
	r.Add("missing", "msgs", 1) // a fourth value: one run broke the invariant
	r.Add("nothing", "ms", math.NaN())
	r.Target("rate", "msg/s", Target{Op: ">=", Value: 20})
	r.Target("missing", "msgs", Target{Op: "==", Value: 0, Every: true})
	r.Target("nothing", "ms", Target{Op: "<=", Value: 1})
	r.Finish()
	rate := r.metric("rate", "")
	if *rate.Median != 20 || *rate.Min != 10 || *rate.Max != 30 || !*rate.Pass {
		t.Errorf("rate: median %v min %v max %v pass %v", *rate.Median, *rate.Min, *rate.Max, *rate.Pass)
	}
	if m := r.metric("missing", ""); *m.Median != 0 || *m.Pass {
		t.Errorf("an invariant broken in one run passed: %+v", m)
	}
	if m := r.metric("nothing", ""); m.Median != nil || m.Pass == nil || *m.Pass {
		t.Errorf("a target without values is not missed: %+v", m)
	}
	rep := &Report{Runs: 3, Scenarios: []*ScenarioReport{r}}
	if met, missed, broken := rep.Counts(); met != 1 || missed != 2 || broken != 1 {
		t.Errorf("Counts() = %d, %d, %d; want 1, 2, 1", met, missed, broken)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Scenarios map[string]struct {
			Metrics map[string]Metric `json:"metrics"`
		} `json:"scenarios"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if got := back.Scenarios["s"].Metrics["rate"].Values; len(got) != 3 {
		t.Errorf("rate values in JSON: %v", got)
	}
}

// TestLoadAgainstBare drives the bare endpoint with both request forms in
// closed and open loop: every message is acknowledged and the counts add up.
func TestLoadAgainstBare(t *testing.T) {
	pool := NewPool(100, "test")
	if err := pool.Grow(context.Background(), 400); err != nil {
		t.Fatal(err)
	}
	for i := range pool.Len() {
		if got, ok := pool.Index(pool.ID(i)); !ok || got != i {
			t.Fatalf("Index(ID(%d)) = %d, %v", i, got, ok)
		}
	}
	b, err := StartBare(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, spec := range []LoadSpec{
		{Batch: 1, Clients: 4, Duration: 10 * time.Second, From: 0, To: 200},
		{Batch: 50, Clients: 2, Duration: 10 * time.Second, From: 200, To: 400},
		{Batch: 1, Clients: 2, Duration: 200 * time.Millisecond, Rate: 500, From: 0, To: 400},
	} {
		spec.URL = b.URL
		lr, err := RunLoad(context.Background(), pool, spec)
		if err != nil {
			t.Fatalf("%+v: %v", spec, err)
		}
		if lr.Refused+lr.Failed != 0 || lr.Acked != lr.Sent {
			t.Errorf("%+v: sent %d acked %d refused %d failed %d (%s)", spec, lr.Sent, lr.Acked, lr.Refused, lr.Failed, lr.FirstError)
		}
		if spec.Rate == 0 && (!lr.Exhausted || lr.Sent != spec.To-spec.From) {
			t.Errorf("%+v: sent %d, exhausted %v; want every message sent", spec, lr.Sent, lr.Exhausted)
		}
		if spec.Rate > 0 && (lr.Sent < 80 || lr.Sent > 101) {
			t.Errorf("open loop at 500/s for 200ms sent %d", lr.Sent)
		}
		for i := spec.From; i < spec.From+lr.Sent; i++ {
			if _, sent := lr.SubmitMicros(i); !sent || !lr.IsAcked(i) {
				t.Fatalf("%+v: message %d sent %v acked %v", spec, i, sent, lr.IsAcked(i))
			}
		}
		if len(lr.Latencies) == 0 {
			t.Errorf("%+v: no latencies", spec)
		}
	}
}

// A target that no run measured is missed, and an invariant that no run
// measured is broken: a run that did no work must not pass.
func TestTargetWithoutValuesIsMissed(t *testing.T) {
	r := NewScenarioReport("s", 1, nil)
	r.Add("committed_per_s", "msg/s", math.NaN())
	r.Target("committed_per_s", "msg/s", Target{Op: ">=", Value: 1})
	r.Target("acked_missing", "msgs", Target{Op: "==", Value: 0, Every: true})
	r.Finish()
	for _, name := range []string{"committed_per_s", "acked_missing"} {
		if m := r.metric(name, ""); m.Pass == nil || *m.Pass {
			t.Errorf("%s without values: pass %v, want false", name, m.Pass)
		}
	}
	rep := &Report{Runs: 1, Scenarios: []*ScenarioReport{r}}
	if met, missed, broken := rep.Counts(); met != 0 || missed != 2 || broken != 1 {
		t.Errorf("Counts() = %d, %d, %d; want 0, 2, 1", met, missed, broken)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(table.String(), "n/a") || strings.Count(table.String(), "FAIL (unmeasured)") != 2 {
		t.Errorf("the table does not show both targets as unmeasured failures:\n%s", table.String())
	}
}

// testBlock is a block at height h, timestamp ts, holding pool messages is.
func testBlock(pool *Pool, h, ts uint64, is ...int) *chain.Block {
	b := &chain.Block{Header: chain.Header{Height: h, Timestamp: ts}}
	for _, i := range is {
		m := pool.Message(i)
		b.Entries = append(b.Entries, chain.EntryOf(&m))
	}
	return b
}

// Reading a chain back counts, of the messages looked for, those
// acknowledged but in no block, and those in the chain twice; messages
// outside the range are foreign.
func TestInclusionCountsMissingAndTwice(t *testing.T) {
	pool := NewPool(20, "test")
	if err := pool.Grow(t.Context(), 10); err != nil {
		t.Fatal(err)
	}
	in := &inclusion{from: 2, height: make([]uint64, 6)} // messages 2..7
	in.add(pool, testBlock(pool, 1, 1000, 2, 3, 0))      // 0: foreign
	in.add(pool, testBlock(pool, 2, 1100, 4, 3, 9))      // 3 again; 9: foreign
	if in.confirmed != 3 || in.twice != 1 || in.foreign != 2 || in.last != 2 {
		t.Errorf("confirmed %d twice %d foreign %d last %d; want 3, 1, 2, 2", in.confirmed, in.twice, in.foreign, in.last)
	}
	if h := in.heightOf(3); h != 1 {
		t.Errorf("message 3 is in block %d, want the first to hold it, 1", h)
	}
	for i, want := range map[int]bool{1: false, 2: true, 3: true, 4: true, 5: false, 7: false, 8: false} {
		if in.has(i) != want {
			t.Errorf("has(%d) = %v, want %v", i, !want, want)
		}
	}
	// 2 and 5 were acknowledged, 6 and 7 not: only 5 is missing.
	acked := func(i int) bool { return i == 2 || i == 5 }
	if got := in.ackedMissing(acked); got != 1 {
		t.Errorf("ackedMissing = %d, want 1", got)
	}

	r := NewScenarioReport("s", 1, nil)
	if got := addChainChecks(r, "p.", in, acked); got != 1 {
		t.Errorf("addChainChecks = %d, want 1", got)
	}
	chainTargets(r, "p.", false)
	r.Finish()
	for _, name := range []string{"p.acked_missing", "p.committed_twice"} {
		if m := r.metric(name, ""); len(m.Values) != 1 || m.Values[0] != 1 || m.Target == nil || !m.Target.Every || *m.Pass {
			t.Errorf("%s: values %v target %+v pass %v; want [1], an invariant, failed", name, m.Values, m.Target, m.Pass)
		}
	}
}

// A message in the chain twice is an invariant of ingest, judged on every
// run, like an acknowledged message that is missing.
func TestIngestTargetsTwiceIsInvariant(t *testing.T) {
	cfg := IngestConfig{Mode: "single", NoBare: true}
	r := NewScenarioReport("ingest", 2, nil)
	for _, v := range []float64{0, 1} {
		r.Add("single.acked_missing", "msgs", 0)
		r.Add("single.committed_twice", "msgs", v)
	}
	ingestTargets(&cfg, r, false)
	r.Finish()
	if m := r.metric("single.committed_twice", ""); m.Target == nil || !m.Target.Every || *m.Pass {
		t.Errorf("committed_twice in one run of two: target %+v pass %v; want a broken invariant", m.Target, m.Pass)
	}
	if m := r.metric("single.acked_missing", ""); m.Target == nil || !m.Target.Every || !*m.Pass {
		t.Errorf("acked_missing: target %+v pass %v; want a met invariant", m.Target, m.Pass)
	}
}

// Propagate's invariants: every acknowledged message in the chain, in both
// clusters, and a full block that holds exactly --max-block-messages.
func TestPropagateTargets(t *testing.T) {
	cfg := PropagateConfig{Peers: 1, MaxBlockMessages: 500}
	r := NewScenarioReport("propagate", 2, nil)
	for _, n := range []float64{500, 499} {
		r.Add("full_block.messages", "msgs", n)
		r.Add("full_block.peers_reached_by_gossip", "peers", 1)
		r.Add("acked_missing", "msgs", 0)
		r.Add("full_block.acked_missing", "msgs", 0)
	}
	propagateTargets(&cfg, r, false)
	r.Finish()
	m := r.metric("full_block.messages", "")
	if m.Target == nil || !m.Target.Every || m.Target.Op != "==" || m.Target.Value != 500 || *m.Pass {
		t.Errorf("a full block of 499 of 500 messages: target %+v pass %v; want a broken invariant", m.Target, m.Pass)
	}
	for _, name := range []string{"acked_missing", "committed_twice", "full_block.acked_missing", "full_block.committed_twice"} {
		if m := r.metric(name, ""); m.Target == nil || !m.Target.Every || m.Target.Value != 0 {
			t.Errorf("%s: target %+v, want = 0 every run", name, m.Target)
		}
	}
	// committed_twice was never measured here: missed, not skipped.
	if m := r.metric("committed_twice", ""); m.Pass == nil || *m.Pass {
		t.Errorf("committed_twice without values: pass %v, want false", m.Pass)
	}
	if m := r.metric("acked_missing", ""); !*m.Pass {
		t.Errorf("acked_missing 0 in every run did not pass")
	}
}

// A run with nothing acknowledged, or nothing committed, is a NoWorkError.
func TestCheckWork(t *testing.T) {
	for _, c := range []struct {
		acked, committed int
		want             string
	}{
		{0, 0, "no message was acknowledged (0 sent)"},
		{5, 0, "none of the 5 messages acknowledged is in a block"},
	} {
		err := checkWork("ingest single run 1", c.acked, c.committed, "0 sent")
		var nw *NoWorkError
		if !errors.As(err, &nw) || nw.What != c.want || nw.Run != "ingest single run 1" {
			t.Errorf("checkWork(%d, %d) = %v, want a NoWorkError %q", c.acked, c.committed, err, c.want)
		}
	}
	if err := checkWork("r", 5, 1, ""); err != nil {
		t.Errorf("checkWork(5, 1) = %v, want nil", err)
	}
}

// Rates that are not finite numbers are refused: they would pass the range
// checks and cannot be written as JSON.
func TestValidateRefusesNonFiniteRates(t *testing.T) {
	for _, rate := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		ic := IngestConfig{Clients: 1, Duration: time.Second, Mode: "single", Batch: 10, Rate: rate, ContentBytes: 100}
		if err := ic.Validate(); err == nil || !strings.Contains(err.Error(), "--rate") {
			t.Errorf("ingest --rate %v: %v, want an error about --rate", rate, err)
		}
		pc := PropagateConfig{Peers: 1, Duration: time.Second, Rate: rate, Batch: 10, MaxBlockMessages: 100, ContentBytes: 100}
		if err := pc.Validate(); err == nil || !strings.Contains(err.Error(), "--rate") {
			t.Errorf("propagate --rate %v: %v, want an error about --rate", rate, err)
		}
	}
}

// Runs too large to pre-sign for, or to time, are refused up front in one
// line that starts with the flag to change, and Grow refuses a pool over
// the cap too rather than panic in makeslice.
func TestPoolSizeIsCapped(t *testing.T) {
	ingest := func(f func(*IngestConfig)) IngestConfig {
		c := IngestConfig{Clients: 1, Duration: time.Second, Mode: "both", Batch: 1000, ContentBytes: 100}
		f(&c)
		return c
	}
	for _, c := range []struct {
		cfg  IngestConfig
		flag string
	}{
		{ingest(func(c *IngestConfig) { c.Presign = 1 << 50 }), "--presign"},
		{ingest(func(c *IngestConfig) { c.Presign = 100_000; c.ContentBytes = 64 << 10 }), "--presign"},
		{ingest(func(c *IngestConfig) { c.Duration = 1 << 62 }), "--duration"},
		{ingest(func(c *IngestConfig) { c.Duration = time.Hour }), "--duration"}, // closed loop: 60,000/s × 1 h
		{ingest(func(c *IngestConfig) { c.Duration = time.Hour; c.Rate = 1e12 }), "--duration"},
		{ingest(func(c *IngestConfig) { c.Clients = 1 << 40 }), "--clients"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), c.flag) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v; want one line starting with %s", c.cfg, err, c.flag)
		}
	}
	if c := ingest(func(c *IngestConfig) { c.Presign = MaxPoolMessages }); c.Validate() != nil {
		t.Errorf("--presign %d (the cap) refused: %v", MaxPoolMessages, c.Validate())
	}

	prop := func(f func(*PropagateConfig)) PropagateConfig {
		c := PropagateConfig{Peers: 1, Duration: time.Second, Rate: 1000, Batch: 100, MaxBlockMessages: 100, ContentBytes: 100}
		f(&c)
		return c
	}
	for _, c := range []struct {
		cfg  PropagateConfig
		flag string
	}{
		{prop(func(c *PropagateConfig) { c.Duration = 1 << 62 }), "--duration"},
		{prop(func(c *PropagateConfig) { c.Rate = 1e300 }), "--duration"},
		{prop(func(c *PropagateConfig) { c.SmallBlocks = 1 << 60 }), "--duration"},
		{prop(func(c *PropagateConfig) { c.MaxBlockMessages = 1 << 40 }), "--max-block-messages"},
		{prop(func(c *PropagateConfig) { c.MaxBlockMessages = 100_000; c.ContentBytes = 64 << 10 }), "--max-block-messages"},
		{prop(func(c *PropagateConfig) { c.FillInterval = 1 << 62 }), "--fill-interval"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), c.flag) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v; want one line starting with %s", c.cfg, err, c.flag)
		}
	}

	pool := NewPool(100, "test")
	if err := pool.Grow(t.Context(), MaxPoolMessages+1); err == nil || pool.Len() != 0 {
		t.Errorf("Grow past the cap: %v, %d messages; want an error and none", err, pool.Len())
	}
}

// A closed-loop run that ran out of messages is repeated with more, but
// never with more than the cap.
func TestGrownPoolStaysUnderCap(t *testing.T) {
	cfg := IngestConfig{Duration: 20 * time.Hour, ContentBytes: 100}
	lr := &LoadResult{Sent: 1000, ExhaustedAt: time.Millisecond} // 1,000,000 msgs/s
	if got, limit := cfg.grownPool(lr, 1000), poolCap(100); got > limit || got%1000 != 0 || got < limit-1000 {
		t.Errorf("grownPool = %d; want the cap %d in whole batches of 1000", got, limit)
	}
	cfg.Duration = time.Second
	if got := cfg.grownPool(lr, 1000); got != 1_300_000 {
		t.Errorf("grownPool for 1 s at 1,000,000/s = %d, want 1,300,000", got)
	}
}

// buildNode builds kimura-node for the tests that start nodes.
func buildNode(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("spawns kimura-node processes")
	}
	bin := filepath.Join(t.TempDir(), "kimura-node")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/kimura-ledger/kimura/cmd/kimura-node").CombinedOutput()
	if err != nil {
		t.Fatalf("go build kimura-node: %v\n%s", err, out)
	}
	return bin
}

// Catchup on a --chain directory goes by the chain found there, not by
// --blocks, which does not apply to it: a 60-block chain gets no verdict
// (the issue states the catch-up target for 10,000 blocks), although
// --blocks says 10,000, while a 10,000-block chain is judged by it; a chain
// with nothing past genesis is a run that does no work. The one leader's
// peak RSS is reported beside each fresh peer's.
func TestCatchupGoesByTheBorrowedChain(t *testing.T) {
	sup, err := NewSupervisor(buildNode(t), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sup.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	borrow := func(blocks int) ChainConfig {
		t.Helper()
		built, err := buildChainDirect(ctx, sup, ChainConfig{Blocks: blocks, MessagesPerBlock: 1, BuildInterval: time.Millisecond, ContentBytes: 40, Builder: "direct"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		return ChainConfig{Blocks: targetCatchupBlocks, MessagesPerBlock: 10, BuildInterval: time.Millisecond, ContentBytes: 100, Builder: "leader", Chain: built.dir}
	}

	t.Run("60 blocks get no verdict", func(t *testing.T) {
		rep, err := Catchup(ctx, sup, borrow(60), 1)
		if err != nil {
			t.Fatal(err)
		}
		rep.Finish()
		if m := rep.metric("exec_to_tip", "s"); m.Target != nil || len(m.Values) != 1 {
			t.Errorf("exec_to_tip of 60 blocks: target %+v, values %v; want the figure without a verdict", m.Target, m.Values)
		}
		if m := rep.metric("leader_peak_rss", "MB"); runtime.GOOS == "linux" && len(m.Values) != 1 {
			t.Errorf("leader_peak_rss: values %v, want one", m.Values)
		}
	})
	t.Run("10,000 blocks are judged", func(t *testing.T) {
		rep, err := Catchup(ctx, sup, borrow(targetCatchupBlocks), 1)
		if err != nil {
			t.Fatal(err)
		}
		rep.Finish()
		m := rep.metric("exec_to_tip", "s")
		if m.Target == nil || m.Target.Op != "<=" || m.Target.Value != targetCatchupSeconds || len(m.Values) != 1 || m.Pass == nil {
			t.Errorf("exec_to_tip: target %+v, values %v, pass %v; want the 10,000-block target judged", m.Target, m.Values, m.Pass)
		}
	})
	t.Run("genesis alone is no work", func(t *testing.T) {
		_, err := Catchup(ctx, sup, borrow(0), 1)
		var nw *NoWorkError
		if !errors.As(err, &nw) {
			t.Errorf("Catchup of a genesis-only chain: %v, want a NoWorkError", err)
		}
	})
}
