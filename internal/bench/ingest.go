package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"time"

	"github.com/kimura-ledger/kimura/internal/node"
)

// IngestConfig is the ingest scenario: Clients concurrent clients submit
// pre-signed unique messages to a fresh leader for Duration, one per
// POST /message (mode single) and Batch per POST /messages (mode batch),
// and the same load is sent to the bare durable endpoint.
type IngestConfig struct {
	Clients      int
	Duration     time.Duration
	Mode         string  // "single", "batch" or "both"
	Batch        int     // messages per POST /messages
	Rate         float64 // offered messages/s, open loop; 0 closed loop
	ContentBytes int
	// Presign is how many messages to sign before the first run; 0 picks
	// by Duration. A closed-loop run that uses them all up before Duration
	// is over is discarded, and repeated with more.
	Presign int
	// BlockInterval is the leader's; 0 runs it with --test-mode (100 ms).
	BlockInterval    time.Duration
	MaxBlockMessages int  // the leader's --max-block-messages; 0 its default
	NoBare           bool // skip the bare endpoint
}

// Validate checks c and fills in defaults.
func (c *IngestConfig) Validate() error {
	switch c.Mode {
	case "":
		c.Mode = "both"
	case "single", "batch", "both":
	default:
		return fmt.Errorf("--mode %q: want single, batch or both", c.Mode)
	}
	if err := checkRate(c.Rate); err != nil {
		return err
	}
	switch {
	case c.Clients < 1 || c.Clients > maxClients:
		return fmt.Errorf("--clients must be from 1 to %d", maxClients)
	case c.Duration <= 0 || c.Duration > maxDuration:
		return fmt.Errorf("--duration must be positive and at most %v", maxDuration)
	case c.Batch < 2 || c.Batch > 1000:
		return errors.New("--batch must be from 2 to 1000")
	case c.Rate < 0:
		return errors.New("--rate must not be negative")
	case c.ContentBytes < 1 || c.ContentBytes > 64<<10:
		return errors.New("--content-bytes must be from 1 to 65536")
	case c.Presign < 0:
		return errors.New("--presign must not be negative")
	case c.BlockInterval < 0:
		return errors.New("--block-interval must not be negative")
	case c.MaxBlockMessages < 0 || c.MaxBlockMessages > node.MaxBlockMessagesLimit:
		return fmt.Errorf("--max-block-messages must be from 0 to %d", node.MaxBlockMessagesLimit)
	}
	for _, mode := range c.modes() {
		if err := checkPoolSize(c.firstPool(mode), c.ContentBytes); err != nil {
			return c.poolError(mode, err)
		}
	}
	return nil
}

// maxClients bounds --clients: each is a goroutine and a connection.
const maxClients = 10_000

// batch is how many messages a request of mode holds.
func (c *IngestConfig) batch(mode string) int {
	if mode == "batch" {
		return c.Batch
	}
	return 1
}

// rateFor is the rate mode's first pool is signed for: Rate, or in a
// closed loop a guess.
func (c *IngestConfig) rateFor(mode string) float64 {
	if c.Rate > 0 {
		return c.Rate
	}
	return closedLoopGuess[mode]
}

// firstPool is how many messages mode's first run is signed for: Presign,
// or enough for Duration at rateFor, in whole requests. It is a float so
// that Validate checks it before it becomes an int.
func (c *IngestConfig) firstPool(mode string) float64 {
	n := float64(c.Presign)
	if n == 0 {
		n = math.Ceil(c.rateFor(mode) * c.Duration.Seconds() * 1.1)
	}
	b := float64(c.batch(mode))
	return math.Ceil(max(n, b)/b) * b
}

// poolError says which flag asked for a pool over the cap.
func (c *IngestConfig) poolError(mode string, err error) error {
	if c.Presign > 0 {
		return fmt.Errorf("--presign %d is %w", c.Presign, err)
	}
	guess := ""
	if c.Rate == 0 {
		guess = " (a closed loop's first guess)"
	}
	return fmt.Errorf("--duration %v at %s msgs/s%s needs %s pre-signed messages, %w: shorten --duration or set --presign",
		c.Duration, messageCount(c.rateFor(mode)), guess, messageCount(c.firstPool(mode)), err)
}

func (c *IngestConfig) modes() []string {
	if c.Mode == "both" {
		return []string{"single", "batch"}
	}
	return []string{c.Mode}
}

func (c *IngestConfig) interval() time.Duration {
	if c.BlockInterval > 0 {
		return c.BlockInterval
	}
	return 100 * time.Millisecond
}

func (c *IngestConfig) leaderArgs() []string {
	args := []string{"--leader"}
	if c.BlockInterval > 0 {
		args = append(args, "--block-interval", c.BlockInterval.String())
	} else {
		args = append(args, "--test-mode")
	}
	if c.MaxBlockMessages > 0 {
		args = append(args, "--max-block-messages", fmt.Sprint(c.MaxBlockMessages))
	}
	return args
}

// Ingest targets (issue #4).
const (
	targetSingleCommitted = 15000
	targetBatchCommitted  = 50000
	targetRatioToBare     = 0.60
	targetClients         = 64 // the throughput targets' C
	targetInclusionSlack  = 50 // ms over the block interval, at 10,000 msgs/s
	targetInclusionRate   = 10000
	targetPeakRSSMB       = 150 // after 1,000,000 messages
	targetDiskPerMsg      = 400 // bytes, for 100-byte messages, after 1,000,000 of them
	targetDiskContent     = 100
	// targetScaleMessages is the size at which the issue sets the RSS and
	// disk targets. Below it the figures are reported without a verdict:
	// Pebble's WAL files (about 54 MB, preallocated and recycled) are a
	// fixed cost that a short run cannot spread.
	targetScaleMessages = 1_000_000
)

// closedLoopGuess is the rate the first pool of a closed-loop run is
// signed for, per mode; a faster node makes the next pool larger.
var closedLoopGuess = map[string]float64{"single": 25000, "batch": 60000}

// Ingest runs the ingest scenario runs times.
func Ingest(ctx context.Context, sup *Supervisor, cfg IngestConfig, runs int) (rep *ScenarioReport, err error) {
	rep = NewScenarioReport("ingest", runs, map[string]any{
		"clients": cfg.Clients, "duration": cfg.Duration.String(), "mode": cfg.Mode, "batch": cfg.Batch,
		"rate": cfg.Rate, "content_bytes": cfg.ContentBytes, "block_interval": cfg.interval().String(),
		"max_block_messages": cfg.MaxBlockMessages,
	})
	// On the way out, whatever ends the runs: an invariant a run broke is
	// judged even if a later run fails.
	defer func() { ingestTargets(&cfg, rep, err != nil) }()
	pool := NewPool(cfg.ContentBytes, "ingest")
	for _, mode := range cfg.modes() {
		batch := cfg.batch(mode)
		first := cfg.firstPool(mode)
		if err := checkPoolSize(first, cfg.ContentBytes); err != nil {
			return rep, cfg.poolError(mode, err) // Validate was not called
		}
		need := int(first)
		for run := 1; run <= runs; run++ {
			if err := ingestRun(ctx, sup, &cfg, rep, pool, mode, batch, need, run, runs); err != nil {
				return rep, err
			}
			need = max(need, pool.Len())
		}
	}
	rep.Notef("committed/s = messages of the load found in blocks ÷ (commit of the last block holding one − load start); inclusion latency = commit of the block holding the message − submit start; a block's commit is the time of the leader's \"Produced block\" line, logged right after its synced commit (leader clock, ms; this tool's clock for the rest, same machine)")
	rep.Notef("submit latency covers the requests that were answered, acknowledged or refused; a request that got no answer (its messages are counted in no_answer) is left out, its latency being unknown, so when no_answer is not 0 the percentiles flatter the node")
	rep.Notef("ratio_to_bare = Kimura's committed/s ÷ the bare endpoint's accepted/s under the same client loop: the bare endpoint commits each request synchronously before it answers, so what it accepted it has committed; it is HTTP + JSON decode + one synced Pebble commit per request (Pebble's default options), no verification, in a child process of its own as the node is")
	if cfg.Rate > 0 {
		rep.Notef("open loop: latencies count from when a request was due, so a server that falls behind is charged for the queue it causes")
	}
	rep.Notef("leader_cpu_per_msg = the leader's CPU time (user + system, from exec until the queue has drained) ÷ messages committed: the cost per message, which other tenants of a shared machine disturb less than they do the rates; bare_cpu_per_msg is the bare endpoint's, per acknowledged message")
	rep.Notef("disk_per_msg is du (allocated blocks) of the stopped leader's data directory ÷ messages committed; Pebble preallocates each WAL file (110%% of the 12 MiB memtable, about 13 MB) and keeps the current one and up to 3 old ones for reuse, so short runs are dominated by that fixed cost (about 54 B/msg at 1,000,000 messages) and the disk and RSS targets are judged only from 1,000,000 messages, the scale the issue sets them at; disk_apparent_per_msg sums file sizes")
	rep.Notef("the load generator runs on the same %d cores as the node and takes part of them", runtime.NumCPU())
	return rep, nil
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

// grownPool is the pool a closed-loop run that ran out of messages is
// repeated with: enough for Duration at the rate it went, with a margin,
// in whole requests, and no more than poolCap.
func (c *IngestConfig) grownPool(lr *LoadResult, batch int) int {
	rate := float64(lr.Sent) / max(lr.ExhaustedAt, 1).Seconds()
	limit := poolCap(c.ContentBytes) / batch * batch
	return min(roundUp(int(min(rate*c.Duration.Seconds()*1.3, float64(limit))), batch), limit)
}

// ingestRun measures one mode once against Kimura and once against the
// bare endpoint.
func ingestRun(ctx context.Context, sup *Supervisor, cfg *IngestConfig, rep *ScenarioReport, pool *Pool, mode string, batch, need, run, runs int) error {
	p := mode + "."
	var (
		lr      *LoadResult
		in      *inclusion
		ldr     *Node
		commits *commitLog
		rss     int64
		cpu     time.Duration
	)
	for attempt := 0; ; attempt++ {
		if pool.Len() < need {
			sup.Progressf("ingest: signing %d messages (not timed)", need-pool.Len())
			if err := pool.Grow(ctx, need); err != nil {
				return err
			}
		}
		var err error
		commits = newCommitLog(0)
		ldr, err = sup.Start(ctx, NodeSpec{Name: "leader", Args: cfg.leaderArgs(), OnLine: commits.onLeader})
		if err != nil {
			return err
		}
		spec := LoadSpec{URL: ldr.URL, Batch: batch, Clients: cfg.Clients, Duration: cfg.Duration, Rate: cfg.Rate, From: 0, To: need}
		lr, err = RunLoad(ctx, pool, spec)
		if err != nil {
			ldr.Kill()
			return err
		}
		short := lr.Exhausted && lr.ExhaustedAt < cfg.Duration*95/100
		// More messages help only a closed loop that had some acknowledged,
		// and only while the pool may grow.
		if more := cfg.grownPool(lr, batch); short && cfg.Rate == 0 && attempt < 3 && lr.Acked > 0 && more > need {
			ldr.Kill()
			sup.Remove(ldr.DBPath)
			need = more
			sup.Progressf("ingest %s: %d pre-signed messages ran out after %.1fs; repeating with %d", mode, lr.Sent, lr.ExhaustedAt.Seconds(), need)
			continue
		}
		if short {
			rep.Notef("%s run %d: the pre-signed messages ran out after %.2fs of %v; raise --presign (at most %s messages of %d bytes)",
				mode, run, lr.ExhaustedAt.Seconds(), cfg.Duration, thousands(int64(poolCap(cfg.ContentBytes))), cfg.ContentBytes)
		}
		height, err := waitDrained(ctx, ldr.Client, 60*time.Second+cfg.Duration)
		if err != nil {
			ldr.Kill()
			return err
		}
		// Before reading the chain back adds its own.
		rss, cpu = ldr.SampleRSS(), ldr.CPUTime()
		in, err = findMessages(ctx, ldr.Client, pool, 0, need, height)
		if err != nil {
			ldr.Kill()
			return err
		}
		if err := ldr.Stop(); err != nil {
			return err
		}
		break
	}

	startMs := float64(lr.Start.UnixMicro()) / 1000
	var incl []float64
	unackedCommitted := 0
	for i := 0; i < need; i++ {
		at, sent := lr.SubmitMicros(i)
		inBlock := in.has(i)
		if inBlock && !lr.IsAcked(i) {
			unackedCommitted++
		}
		if inBlock && sent {
			committed, err := commits.producedMs(in.heightOf(i)) // the leader has stopped: its log is read
			if err != nil {
				return err
			}
			incl = append(incl, committed-float64(at)/1000)
		}
	}
	committedPerS := math.NaN()
	if in.confirmed > 0 {
		lastMs, err := commits.producedMs(in.last)
		if err != nil {
			return err
		}
		committedPerS = float64(in.confirmed) / ((lastMs - startMs) / 1000)
	}
	acceptedPerS := float64(lr.Acked) / lr.Seconds()

	if cfg.Rate > 0 {
		rep.Add(p+"offered_per_s", "msg/s", float64(lr.Sent)/cfg.Duration.Seconds())
	}
	rep.Add(p+"accepted_per_s", "msg/s", acceptedPerS)
	rep.Add(p+"committed_per_s", "msg/s", committedPerS)
	rep.Add(p+"submit_p50", "ms", Percentile(lr.Latencies, 50))
	rep.Add(p+"submit_p99", "ms", Percentile(lr.Latencies, 99))
	rep.Add(p+"inclusion_p50", "ms", Percentile(incl, 50))
	rep.Add(p+"inclusion_p99", "ms", Percentile(incl, 99))
	ackedMissing := addChainChecks(rep, p, in, lr.IsAcked)
	rep.Add(p+"refused", "msgs", float64(lr.Refused))
	rep.Add(p+"no_answer", "msgs", float64(lr.Failed))
	rep.Add(p+"committed", "msgs", float64(in.confirmed))
	if rss > 0 {
		rep.Add(p+"leader_peak_rss", "MB", float64(rss)/(1<<20))
	}
	if cpu > 0 && in.confirmed > 0 {
		rep.Add(p+"leader_cpu_per_msg", "µs", float64(cpu.Microseconds())/float64(in.confirmed))
	}
	if du, apparent, err := diskUsage(ldr.DBPath); err == nil && in.confirmed > 0 {
		rep.Add(p+"disk_per_msg", "B/msg", float64(du)/float64(in.confirmed))
		rep.Add(p+"disk_apparent_per_msg", "B/msg", float64(apparent)/float64(in.confirmed))
	}
	sup.Remove(ldr.DBPath)
	if len(lr.Codes) > 0 {
		rep.Notef("%s run %d: refused with HTTP status counts %v", mode, run, lr.Codes)
	}
	if lr.FirstError != "" {
		rep.Notef("%s run %d: %d messages got no answer, first error: %s", mode, run, lr.Failed, lr.FirstError)
	}
	if unackedCommitted > 0 {
		rep.Notef("%s run %d: %d messages are in blocks without having been acknowledged (no answer or refused)", mode, run, unackedCommitted)
	}
	if in.foreign > 0 {
		rep.Notef("%s run %d: the chain holds %d messages not sent by this run", mode, run, in.foreign)
	}
	if err := checkWork(fmt.Sprintf("ingest %s run %d", mode, run), lr.Acked, in.confirmed, loadSummary(lr)); err != nil {
		return err
	}

	bareLine := ""
	if !cfg.NoBare {
		bare, err := bareRun(ctx, sup, cfg, pool, batch, need)
		if err != nil {
			return err
		}
		ratio := addBareFigures(rep, p, committedPerS, bare)
		bareLine = fmt.Sprintf(", bare %.0f/s (ratio %.3f)", bare.rate, ratio)
	}
	sup.Progressf("ingest %s run %d/%d: accepted %.0f/s, committed %.0f/s, submit p99 %.1f ms, inclusion p99 %.1f ms, acked-but-missing %d%s",
		mode, run, runs, acceptedPerS, committedPerS, Percentile(lr.Latencies, 99), Percentile(incl, 99), ackedMissing, bareLine)
	return nil
}

// bareFigures is what the bare endpoint did under a run's load.
type bareFigures struct {
	rate      float64 // acknowledged messages/s; each was committed before its answer
	p99       float64 // ms, per request
	rss       int64   // peak, bytes; 0 if unknown
	cpuPerMsg time.Duration
}

// bareRun sends the same load to the bare endpoint, run as a child
// process, and returns what it did.
// The bare endpoint checks nothing, so when the pool runs out the load
// starts over from its first message.
func bareRun(ctx context.Context, sup *Supervisor, cfg *IngestConfig, pool *Pool, batch, n int) (bareFigures, error) {
	b, err := sup.Start(ctx, NodeSpec{Name: "bare", Bare: true})
	if err != nil {
		return bareFigures{}, err
	}
	defer sup.Remove(b.DBPath)
	lr, err := RunLoad(ctx, pool, LoadSpec{URL: b.URL, Batch: batch, Clients: cfg.Clients, Duration: cfg.Duration, Rate: cfg.Rate, From: 0, To: n, Wrap: true})
	if err != nil {
		b.Kill()
		return bareFigures{}, err
	}
	cpu := b.CPUTime()
	if err := b.Stop(); err != nil {
		return bareFigures{}, err
	}
	if lr.Acked == 0 {
		return bareFigures{}, fmt.Errorf("bench: the bare endpoint acknowledged nothing (%d refused, %d unanswered: %s)", lr.Refused, lr.Failed, lr.FirstError)
	}
	return bareFigures{
		rate: float64(lr.Acked) / lr.Seconds(), p99: Percentile(lr.Latencies, 99),
		rss: b.PeakRSS(), cpuPerMsg: cpu / time.Duration(lr.Acked),
	}, nil
}

// addBareFigures records the bare endpoint's figures under prefix, and
// Kimura's ratio to it, which it returns: Kimura's committed/s over the
// bare endpoint's rate, since the 60% sits with committed
// messages/s and the bare endpoint commits each request before it answers.
func addBareFigures(rep *ScenarioReport, prefix string, committedPerS float64, b bareFigures) float64 {
	rep.Add(prefix+"bare_accepted_per_s", "msg/s", b.rate)
	rep.Add(prefix+"bare_submit_p99", "ms", b.p99)
	if b.rss > 0 {
		rep.Add(prefix+"bare_peak_rss", "MB", float64(b.rss)/(1<<20))
	}
	if b.cpuPerMsg > 0 {
		rep.Add(prefix+"bare_cpu_per_msg", "µs", float64(b.cpuPerMsg.Nanoseconds())/1000)
	}
	ratio := committedPerS / b.rate
	rep.Add(prefix+"ratio_to_bare", "ratio", ratio)
	return ratio
}

// ingestTargets sets the invariants and, after runs that all succeeded
// (not failed), the targets of issue #4 whose conditions the runs met:
// committed/s and the ratio to the bare endpoint are stated for 64 clients
// in a closed loop, and inclusion latency at 10,000 messages/s offered.
// Figures taken under other conditions are reported without a verdict.
func ingestTargets(cfg *IngestConfig, rep *ScenarioReport, failed bool) {
	for _, mode := range cfg.modes() {
		p := mode + "."
		chainTargets(rep, p, failed)
		if failed {
			continue
		}
		throughput := cfg.Rate == 0 && cfg.Clients == targetClients
		switch {
		case throughput && mode == "single":
			rep.Target(p+"committed_per_s", "msg/s", Target{Op: ">=", Value: targetSingleCommitted, Note: "POST /message, closed loop, 64 clients"})
			if !cfg.NoBare {
				rep.Target(p+"ratio_to_bare", "ratio", Target{Op: ">=", Value: targetRatioToBare, Note: "committed/s ÷ the bare endpoint's, closed loop, 64 clients"})
			}
		case throughput && mode == "batch":
			rep.Target(p+"committed_per_s", "msg/s", Target{Op: ">=", Value: targetBatchCommitted, Note: "POST /messages, closed loop, 64 clients"})
		}
		if cfg.Rate == targetInclusionRate {
			rep.Target(p+"inclusion_p99", "ms", Target{Op: "<=", Value: float64(cfg.interval().Milliseconds() + targetInclusionSlack), Note: "block interval + 50 ms at 10,000 msgs/s offered"})
		}
		if m := rep.metric(p+"committed", "msgs"); len(m.Values) > 0 && Median(m.Values) >= targetScaleMessages {
			rep.Target(p+"leader_peak_rss", "MB", Target{Op: "<=", Value: targetPeakRSSMB, Note: "after 1,000,000 messages"})
			if cfg.ContentBytes == targetDiskContent {
				rep.Target(p+"disk_per_msg", "B/msg", Target{Op: "<=", Value: targetDiskPerMsg, Note: "100-byte messages, after 1,000,000"})
			}
		}
	}
	if failed {
		return
	}
	if cfg.Rate != 0 || cfg.Clients != targetClients {
		what := "committed/s and ratio_to_bare are"
		if cfg.NoBare {
			what = "committed/s is"
		}
		rep.Notef("%s judged only as the issue states it, in a closed loop (--rate 0) of 64 clients; here reported without a verdict", what)
	}
	if cfg.Rate != targetInclusionRate {
		rep.Notef("inclusion latency is judged only at --rate %d (open loop), where the issue states its target; here it is reported without a verdict", targetInclusionRate)
	}
}
