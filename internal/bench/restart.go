package bench

import (
	"context"
	"fmt"
	"time"
)

// Restart and catch-up targets (issue #4).
const (
	targetRestart100k    = 2.0  // s, 100,000 blocks verified and serving
	targetRestart1M      = 10.0 // s, 1,000,000 blocks
	targetCatchupBlocks  = 10000
	targetCatchupSeconds = 2.0
)

// idleInterval is the block interval of a leader that is measured but must
// not grow its chain meanwhile.
const idleInterval = "1h"

// Restart builds a chain, then runs times starts a leader on it and times
// exec to the first healthy GET /health: the whole chain is verified before
// anything is served. The runs share the data directory, so all but the
// first find it in the page cache as the first does right after building.
func Restart(ctx context.Context, sup *Supervisor, cfg ChainConfig, runs int) (*ScenarioReport, error) {
	rep := NewScenarioReport("restart", runs, cfg.params())
	bc, err := buildChain(ctx, sup, cfg, "restart")
	if err != nil {
		return rep, err
	}
	addChainMetrics(rep, bc, cfg)
	var chainBlocks uint64 // genesis included
	for run := 1; run <= runs; run++ {
		n, err := sup.Start(ctx, NodeSpec{Name: "restart", DBPath: bc.dir, Args: []string{"--leader", "--block-interval", idleInterval}})
		if err != nil {
			return rep, err
		}
		took := n.Healthy.Sub(n.Exec)
		line, ok := n.Verified()
		if err := n.Stop(); err != nil {
			return rep, err
		}
		if !ok {
			return rep, fmt.Errorf("bench: the restarted leader did not log \"Chain integrity verified\"")
		}
		blocks, verify, _ := line.ChainVerified()
		chainBlocks = max(chainBlocks, blocks)
		rep.Add("exec_to_health", "s", took.Seconds())
		rep.Add("blocks_per_s", "blocks/s", float64(blocks)/took.Seconds())
		rep.Add("node_verify_time", "s", verify.Seconds())
		rep.Add("verified_blocks", "blocks", float64(blocks))
		if rss := n.PeakRSS(); rss > 0 {
			rep.Add("peak_rss", "MB", float64(rss)/(1<<20))
		}
		sup.Progressf("restart run %d/%d: %d blocks verified and serving in %v (node's own verify: %v)", run, runs, blocks, took.Round(time.Millisecond), verify)
	}
	height := bc.judgedHeight(cfg, max(chainBlocks, 1)-1)
	switch {
	case chainBlocks == 0:
	case height <= 100_000:
		rep.Target("exec_to_health", "s", Target{Op: "<=", Value: targetRestart100k, Note: "up to 100,000 blocks"})
	case height <= 1_000_000:
		rep.Target("exec_to_health", "s", Target{Op: "<=", Value: targetRestart1M, Note: "up to 1,000,000 blocks"})
	}
	rep.Notef("exec_to_health runs from just before exec to the first 200 from GET /health (polled every %v); node_verify_time is the took= of its \"Chain integrity verified\" line", healthPoll)
	rep.Notef("the data directory is in the page cache for every run (no root to drop caches): a cold start after a reboot is slower")
	bc.release(sup)
	return rep, nil
}

// judgedHeight is the chain height a target is chosen by: the size asked
// for, or for a --chain directory the height found in it (found: what the
// node reports). A built chain ends a few blocks past --blocks, and is
// judged as the size asked for.
func (bc *builtChain) judgedHeight(cfg ChainConfig, found uint64) uint64 {
	if bc.borrowed {
		return found
	}
	return uint64(cfg.Blocks)
}

// Catchup builds a chain, starts a leader on it, and runs times times a
// fresh peer from exec until its /height equals the leader's.
func Catchup(ctx context.Context, sup *Supervisor, cfg ChainConfig, runs int) (*ScenarioReport, error) {
	rep := NewScenarioReport("catchup", runs, cfg.params())
	bc, err := buildChain(ctx, sup, cfg, "catchup")
	if err != nil {
		return rep, err
	}
	addChainMetrics(rep, bc, cfg)
	ldr, err := sup.Start(ctx, NodeSpec{Name: "leader", DBPath: bc.dir, Args: []string{"--leader", "--block-interval", idleInterval}})
	if err != nil {
		return rep, err
	}
	defer ldr.Kill()
	tip, err := ldr.Client.Height(ctx)
	if err != nil {
		return rep, fmt.Errorf("bench: leader height: %w", err)
	}
	if tip.Height == 0 {
		// Only a --chain directory can be empty; a peer would be at the
		// tip as soon as it served, and the target met by nothing.
		return rep, &NoWorkError{Run: "catchup", What: "the chain has no block past genesis"}
	}
	for run := 1; run <= runs; run++ {
		p, err := sup.Start(ctx, NodeSpec{Name: "peer", Args: []string{"--leader-rpc", ldr.URL}})
		if err != nil {
			return rep, err
		}
		at, err := waitHeight(ctx, p.Client, tip.Height, 10*time.Minute)
		if err != nil {
			p.Kill()
			return rep, err
		}
		got, err := p.Client.Height(ctx)
		if err == nil && got.Hash != tip.Hash {
			err = fmt.Errorf("bench: the peer's block %d is %s, the leader's %s", got.Height, got.Hash, tip.Hash)
		}
		if serr := p.Stop(); err == nil {
			err = serr
		}
		if err != nil {
			return rep, err
		}
		took := at.Sub(p.Exec)
		rep.Add("exec_to_tip", "s", took.Seconds())
		rep.Add("blocks_per_s", "blocks/s", float64(tip.Height)/took.Seconds())
		if rss := p.PeakRSS(); rss > 0 {
			rep.Add("peer_peak_rss", "MB", float64(rss)/(1<<20))
		}
		sup.Remove(p.DBPath)
		sup.Progressf("catchup run %d/%d: a fresh peer reached height %d in %v", run, runs, tip.Height, took.Round(time.Millisecond))
	}
	if err := ldr.Stop(); err != nil {
		return rep, err
	}
	if bc.judgedHeight(cfg, tip.Height) <= targetCatchupBlocks {
		rep.Target("exec_to_tip", "s", Target{Op: "<=", Value: targetCatchupSeconds, Note: "up to 10,000 blocks"})
	}
	rep.Notef("exec_to_tip runs from just before the peer's exec until its GET /height (polled every %v) equals the leader's tip", pollEvery/4)
	bc.release(sup)
	return rep, nil
}
