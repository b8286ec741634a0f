package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/node"
)

// ChainConfig is a chain that the restart and catchup scenarios build
// before they measure: Blocks blocks of MessagesPerBlock messages each.
type ChainConfig struct {
	Blocks           int
	MessagesPerBlock int
	// BuildInterval is the building leader's block interval. Blocks hold
	// MessagesPerBlock only while messages arrive at least that fast;
	// otherwise they hold what came, and the report says how many in all.
	BuildInterval time.Duration
	ContentBytes  int
	// Builder is "leader" (a leader fed over HTTP, the default) or "direct"
	// (written with the node's store package; see buildChainDirect).
	Builder string
	// Chain, when set, is a stopped node's data directory to measure
	// instead of building a chain. It is used in place, not copied or removed.
	Chain string
}

// Chain limits. What a chain would take is checked up front, where a bad
// flag is a usage error rather than an int overflow, a build that never
// ends, or a disk or memory filled an hour in.
const (
	// maxChainBlocks is ten times the longest chain the issue sets a
	// target for (1,000,000 blocks).
	maxChainBlocks = 10_000_000
	// maxChainMessages is ten times what a pre-signed pool may hold, and
	// ten times the largest chain the README reports on (1,000,000 blocks
	// of 10 messages).
	maxChainMessages = 10 * MaxPoolMessages
	// maxChainContent bounds the bytes of content a chain holds, 64 GiB,
	// and so the disk it fills (more than that: a 100-byte message takes
	// 250–290 bytes), as maxPoolBytes bounds a pool's memory.
	maxChainContent = 8 * maxPoolBytes
)

// Validate checks c.
func (c *ChainConfig) Validate() error {
	switch {
	case c.Blocks < 1 || c.Blocks > maxChainBlocks:
		return fmt.Errorf("--blocks must be from 1 to %s (ten times the longest chain the issue sets a target for)", thousands(maxChainBlocks))
	case c.MessagesPerBlock < 0 || c.MessagesPerBlock > 10000:
		return errors.New("--messages-per-block must be from 0 to 10000")
	case c.BuildInterval < time.Millisecond || c.BuildInterval > maxDuration:
		return fmt.Errorf("--build-interval must be from 1ms to %v", maxDuration)
	case c.ContentBytes < 1 || c.ContentBytes > 64<<10:
		return errors.New("--content-bytes must be from 1 to 65536")
	case c.Builder != "leader" && c.Builder != "direct":
		return errors.New("--build must be leader or direct")
	}
	// Both bounded above, so the products cannot overflow.
	msgs := int64(c.Blocks) * int64(c.MessagesPerBlock)
	switch {
	case msgs > maxChainMessages:
		return fmt.Errorf("--blocks %d × --messages-per-block %d is %s messages, more than a chain may hold (at most %s, ten times a pre-signed pool)",
			c.Blocks, c.MessagesPerBlock, thousands(msgs), thousands(maxChainMessages))
	case msgs*int64(c.ContentBytes) > maxChainContent:
		return fmt.Errorf("--blocks %d × --messages-per-block %d × --content-bytes %d is %.1f GiB of content, more than a chain may hold (at most %d GiB, eight times what pre-signed messages may take in memory; on disk it takes more)",
			c.Blocks, c.MessagesPerBlock, c.ContentBytes, float64(msgs*int64(c.ContentBytes))/(1<<30), maxChainContent>>30)
	}
	// The direct builder holds a few groups per core, each of at most
	// directGroupBytes unless one block alone is larger: refusing such
	// blocks bounds its memory whatever the machine.
	if block := int64(c.MessagesPerBlock) * directMessageBytes(c.ContentBytes); c.Builder == "direct" && block > directGroupBytes {
		return fmt.Errorf("--messages-per-block %d of --content-bytes %d take about %d MiB a block in memory, more than --build direct holds at once (%d MiB): lower either, or use --build leader",
			c.MessagesPerBlock, c.ContentBytes, block>>20, directGroupBytes>>20)
	}
	return nil
}

func (c *ChainConfig) params() map[string]any {
	return map[string]any{
		"blocks": c.Blocks, "messages_per_block": c.MessagesPerBlock,
		"build_interval": c.BuildInterval.String(), "content_bytes": c.ContentBytes, "build": c.Builder,
	}
}

// builtChain is a stopped leader's data directory holding a built chain.
type builtChain struct {
	dir      string
	height   uint64
	messages int
	took     time.Duration
	peakRSS  int64 // of the leader that built it, which took every message
	disk     int64 // du of the data directory after the stop
	apparent int64 // the sum of its files' sizes
	borrowed bool  // given with --chain: not built here, never removed
}

// release removes the chain's directory unless it was borrowed.
func (bc *builtChain) release(sup *Supervisor) {
	if !bc.borrowed {
		sup.Remove(bc.dir)
	}
}

// buildChain builds the chain cfg describes with cfg.Builder, or borrows
// cfg.Chain.
func buildChain(ctx context.Context, sup *Supervisor, cfg ChainConfig, what string) (*builtChain, error) {
	if cfg.Chain != "" {
		if _, err := os.Stat(node.ChainDir(cfg.Chain)); err != nil {
			return nil, fmt.Errorf("bench: --chain %s: not a node's data directory: %w", cfg.Chain, err)
		}
		return &builtChain{dir: cfg.Chain, borrowed: true}, nil
	}
	if cfg.Builder == "direct" {
		return buildChainDirect(ctx, sup, cfg, what)
	}
	return buildChainLeader(ctx, sup, cfg, what)
}

// buildChainLeader runs a leader with a short block interval and at most
// MessagesPerBlock messages a block, feeds it signed batches (signed as it
// goes: building is not measured) until it has sealed Blocks blocks, lets
// it seal its queue, and stops it gracefully.
func buildChainLeader(ctx context.Context, sup *Supervisor, cfg ChainConfig, what string) (*builtChain, error) {
	start := time.Now()
	var height, sealed atomic.Int64
	perBlock := max(cfg.MessagesPerBlock, 1)
	ldr, err := sup.Start(ctx, NodeSpec{
		Name: "builder",
		Args: []string{"--leader", "--block-interval", cfg.BuildInterval.String(), "--max-block-messages", fmt.Sprint(perBlock)},
		OnLine: func(l *LogLine) {
			if h, n, ok := l.ProducedBlock(); ok {
				height.Store(int64(h))
				sealed.Add(int64(n))
			}
		},
	})
	if err != nil {
		return nil, err
	}
	defer ldr.Kill()

	total := cfg.Blocks * cfg.MessagesPerBlock
	batch := min(1000, max(100, 20*cfg.MessagesPerBlock))
	// Keep the queue short, so that a stop at height Blocks leaves little
	// to seal past it.
	queueCap := int64(max(200*cfg.MessagesPerBlock, 2*batch))
	keys := NewPool(cfg.ContentBytes, "chain").keys
	var next, acked atomic.Int64
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fctx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	done := func() bool { return fctx.Err() != nil || height.Load() >= int64(cfg.Blocks) }
	sub, err := newSubmitter(fctx, ldr.URL, runtime.NumCPU()*2)
	if err != nil {
		return nil, err
	}
	defer sub.close()
	for range runtime.NumCPU() * 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies := make([][]byte, 0, batch)
			for !done() {
				if acked.Load()-sealed.Load() > queueCap {
					time.Sleep(2 * time.Millisecond)
					continue
				}
				lo := int(next.Add(int64(batch)) - int64(batch))
				if lo >= total {
					return
				}
				hi := min(lo+batch, total)
				bodies = bodies[:0]
				for i := lo; i < hi; i++ {
					m := signed(keys, cfg.ContentBytes, i)
					bodies = append(bodies, submissionJSON(&m))
				}
				codes, err := sub.post(fctx, "/messages", batchBody(bodies), hi-lo)
				if err != nil {
					if fctx.Err() == nil {
						errOnce.Do(func() { firstErr = fmt.Errorf("bench: building the chain: %w", err) })
						stopFeed()
					}
					return
				}
				for _, c := range codes {
					if c == 0 {
						acked.Add(1)
					}
				}
			}
		}()
	}
	// Progress, and the end: Blocks sealed, or every message sent.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	fed := make(chan struct{})
	go func() { wg.Wait(); close(fed) }()
	for waiting := true; waiting; {
		select {
		case <-fed:
			waiting = false
		case <-tick.C:
			sup.Progressf("%s: building chain: height %d of %d, %d messages sealed (%v)", what, height.Load(), cfg.Blocks, sealed.Load(), time.Since(start).Round(time.Second))
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := waitDrained(ctx, ldr.Client, 5*time.Minute); err != nil {
		return nil, err
	}
	// Every message is sealed; let the chain reach Blocks with empty blocks.
	for height.Load() < int64(cfg.Blocks) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			sup.Progressf("%s: building chain: height %d of %d (%v)", what, height.Load(), cfg.Blocks, time.Since(start).Round(time.Second))
		case <-time.After(pollEvery):
		}
	}
	if err := ldr.Stop(); err != nil {
		return nil, err
	}
	bc := &builtChain{dir: ldr.DBPath, took: time.Since(start), peakRSS: ldr.PeakRSS()}
	// The stop may seal one more block: read what was logged last.
	bc.height, bc.messages = uint64(height.Load()), int(sealed.Load())
	if bc.disk, bc.apparent, err = diskUsage(ldr.DBPath); err != nil {
		return nil, fmt.Errorf("bench: disk usage: %w", err)
	}
	sup.Progressf("%s: built %d blocks with %d messages in %v", what, bc.height, bc.messages, bc.took.Round(time.Millisecond))
	return bc, nil
}

// submissionJSON is the body of POST /message for m.
func submissionJSON(m *chain.Message) []byte {
	b, err := json.Marshal(api.NewSubmission(m))
	if err != nil {
		panic(err) // strings and numbers only: cannot fail
	}
	return b
}

// addChainMetrics reports what the built chain is and what building it cost.
func addChainMetrics(rep *ScenarioReport, bc *builtChain, cfg ChainConfig) {
	if bc.borrowed {
		rep.Notef("measured on the existing data directory %s (--chain), not built: --blocks and the build flags do not apply", bc.dir)
		return
	}
	rep.Add("chain_height", "blocks", float64(bc.height))
	rep.Add("chain_messages", "msgs", float64(bc.messages))
	rep.Add("build_time", "s", bc.took.Seconds())
	if bc.peakRSS > 0 {
		rep.Add("builder_peak_rss", "MB", float64(bc.peakRSS)/(1<<20))
		if bc.messages >= targetScaleMessages {
			rep.Target("builder_peak_rss", "MB", Target{Op: "<=", Value: targetPeakRSSMB, Note: "after 1,000,000 messages"})
		}
	}
	if bc.messages > 0 {
		rep.Add("disk_per_msg", "B/msg", float64(bc.disk)/float64(bc.messages))
		rep.Add("disk_apparent_per_msg", "B/msg", float64(bc.apparent)/float64(bc.messages))
		// A direct build never writes the pending: records a leader writes
		// and deletes for every message, so its disk is not a node's.
		if cfg.ContentBytes == targetDiskContent && bc.messages >= targetScaleMessages && cfg.Builder != "direct" {
			rep.Target("disk_per_msg", "B/msg", Target{Op: "<=", Value: targetDiskPerMsg, Note: "100-byte messages, after 1,000,000"})
		}
	}
	if want := cfg.Blocks * cfg.MessagesPerBlock; bc.messages < want {
		rep.Notef("the chain holds %d messages, not %d: messages did not arrive fast enough for every block to be full at --build-interval %v (mean %.1f a block)",
			bc.messages, want, cfg.BuildInterval, float64(bc.messages)/math.Max(float64(bc.height), 1))
	}
	if cfg.Builder == "direct" {
		rep.Notef("the chain is built once (not timed) with the node's store package in this process, and every run measures it; disk_per_msg is du of the data directory ÷ messages, blocks included, and has no verdict: a direct build never writes (nor deletes) the pending: record a leader keeps for every message until it is sealed, so its disk is not a node's")
	} else {
		rep.Notef("the chain is built once (not timed) by a leader and every run measures it; it ends a few blocks past --blocks, sealed while the queue drained; disk_per_msg is du of the stopped builder's data directory ÷ messages, blocks included")
	}
}
