package bench

import (
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"
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
	if m := r.metric("nothing", ""); m.Median != nil || m.Pass != nil {
		t.Errorf("a metric without values has a verdict: %+v", m)
	}
	rep := &Report{Runs: 3, Scenarios: []*ScenarioReport{r}}
	if met, missed, broken := rep.Counts(); met != 1 || missed != 1 || broken != 1 {
		t.Errorf("Counts() = %d, %d, %d; want 1, 1, 1", met, missed, broken)
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
