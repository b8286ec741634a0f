package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/kimura-ledger/kimura/internal/node"
)

// PropagateConfig is the propagate scenario: a leader and Peers peers; the
// time from the leader's commit of a block to each peer's commit of it, for
// blocks of one message and, under a load of Rate msgs/s, of 1,000 and more;
// then, on a second cluster, whether a block of MaxBlockMessages messages
// reaches every peer.
type PropagateConfig struct {
	Peers            int
	Duration         time.Duration // of the load that makes large blocks
	Rate             float64       // msgs/s of that load; at 100 ms blocks, 15,000/s makes ~1,500-message blocks
	Batch            int           // messages per POST /messages of that load
	SmallBlocks      int           // one-message blocks to measure
	MaxBlockMessages int           // the leaders' --max-block-messages, and the size of the full block
	// FillInterval is the second leader's block interval, long enough to
	// submit MaxBlockMessages messages between two blocks; 0 picks by size.
	FillInterval time.Duration
	ContentBytes int
}

// Validate checks c and fills in defaults.
func (c *PropagateConfig) Validate() error {
	if err := checkRate(c.Rate); err != nil {
		return err
	}
	switch {
	case c.Peers < 1 || c.Peers > maxPeers:
		return fmt.Errorf("--peers must be from 1 to %d", maxPeers)
	case c.Duration <= 0 || c.Duration > maxDuration:
		return fmt.Errorf("--duration must be positive and at most %v", maxDuration)
	case c.Rate <= 0:
		return errors.New("--rate must be positive")
	case c.Batch < 1 || c.Batch > 1000:
		return errors.New("--batch must be from 1 to 1000")
	case c.SmallBlocks < 0:
		return errors.New("--small-blocks must not be negative")
	case c.MaxBlockMessages < 1 || c.MaxBlockMessages > node.MaxBlockMessagesLimit:
		return fmt.Errorf("--max-block-messages must be from 1 to %d", node.MaxBlockMessagesLimit)
	case c.FillInterval < 0 || c.FillInterval > maxDuration:
		return fmt.Errorf("--fill-interval must be from 0 to %v", maxDuration)
	case c.ContentBytes < 1 || c.ContentBytes > 64<<10:
		return errors.New("--content-bytes must be from 1 to 65536")
	}
	// The pool holds the one-message blocks' messages and the load's, and
	// the full block's from its start.
	_, to := c.loadRange()
	if err := checkPoolSize(to, c.ContentBytes); err != nil {
		return fmt.Errorf("--duration %v at --rate %g, after --small-blocks %d, needs %s pre-signed messages, %w: lower one of them",
			c.Duration, c.Rate, c.SmallBlocks, messageCount(to), err)
	}
	if err := checkPoolSize(float64(c.MaxBlockMessages), c.ContentBytes); err != nil {
		return fmt.Errorf("--max-block-messages %d is %w", c.MaxBlockMessages, err)
	}
	if c.FillInterval == 0 {
		c.FillInterval = max(2*time.Second, time.Duration(float64(c.MaxBlockMessages)/4000*float64(time.Second)))
	}
	return nil
}

// loadRange is the pool messages the load sends, [from, to): those after
// the one-message blocks', in whole batches, enough for Duration at Rate.
// Floats, so that Validate checks them before they become ints.
func (c *PropagateConfig) loadRange() (from, to float64) {
	b := float64(c.Batch)
	from = math.Ceil(float64(c.SmallBlocks)/b) * b
	return from, from + math.Ceil(math.Ceil(c.Rate*c.Duration.Seconds())/b)*b
}

// maxPeers bounds --peers: each peer is a kimura-node process on this
// machine, beside the leader and the load generator.
const maxPeers = 64

// Propagate targets (issue #4).
const targetPropagateP99 = 20 // ms, to 3 peers, 1,000-message blocks

// propagateInterval is the first cluster's block interval (--test-mode).
const propagateInterval = 100 * time.Millisecond

// propagateClients is how many requests the load keeps in flight at most.
const propagateClients = 16

// cluster is a leader and its peers.
type cluster struct {
	leader *Node
	peers  []*Node
	log    *commitLog
}

func startCluster(ctx context.Context, sup *Supervisor, peers int, leaderArgs []string) (*cluster, error) {
	c := &cluster{log: newCommitLog(peers)}
	var err error
	c.leader, err = sup.Start(ctx, NodeSpec{Name: "leader", Args: leaderArgs, OnLine: c.log.onLeader})
	if err != nil {
		return nil, err
	}
	for i := range peers {
		p, err := sup.Start(ctx, NodeSpec{
			Name:   fmt.Sprintf("peer%d", i+1),
			Args:   []string{"--leader-rpc", c.leader.URL, "--log-level", "debug"},
			OnLine: c.log.onPeer(i),
		})
		if err != nil {
			c.kill()
			return nil, err
		}
		c.peers = append(c.peers, p)
	}
	return c, nil
}

// synced waits until every peer has the leader's height as of the call.
func (c *cluster) synced(ctx context.Context, timeout time.Duration) (uint64, error) {
	h, err := c.leader.Client.Height(ctx)
	if err != nil {
		return 0, fmt.Errorf("bench: leader height: %w", err)
	}
	for _, p := range c.peers {
		if _, err := waitHeight(ctx, p.Client, h.Height, timeout); err != nil {
			return 0, err
		}
	}
	return h.Height, nil
}

// settle waits, once the leader's queue has drained at block tip, until
// each peer has stored tip (up to timeout each: one that has not is left to
// the figures as not reached) and this benchmark has read the log lines
// about it: the leader's "Produced block" and each such peer's "Stored
// blocks". Without the wait, the tip's samples could be missing or counted
// as not reached although the block was there.
func (c *cluster) settle(ctx context.Context, tip uint64, timeout time.Duration) {
	for i, p := range c.peers {
		if _, err := waitHeight(ctx, p.Client, tip, timeout); err != nil {
			continue
		}
		c.log.await(ctx, logLag, func() bool { return c.log.hasStored(i, tip) })
	}
	c.log.await(ctx, logLag, func() bool { return c.log.hasProduced(tip) })
}

// reachedByGossip counts the peers that received block h by gossip and
// stored it, waiting up to timeout for each. A peer's height alone would
// not do: peers also poll the leader every second and catch up over HTTP,
// so they reach a block that gossip dropped (over gossipsub's size limit,
// or out of its queues) as well. A receipt is the peer's "Received block by
// gossip" line, which it logs for every block the leader's gossip brings,
// also one it has meanwhile stored by catch-up.
func (c *cluster) reachedByGossip(ctx context.Context, h uint64, timeout time.Duration) int {
	n := 0
	for i, p := range c.peers {
		start := time.Now()
		if _, err := waitHeight(ctx, p.Client, h, timeout); err != nil {
			continue
		}
		// A receipt by gossip is logged before the store it leads to, so
		// once the "Stored blocks" line is read, so is such a receipt; one
		// that comes after a store by catch-up may still come in time.
		if !c.log.await(ctx, logLag, func() bool { return c.log.hasStored(i, h) }) {
			continue
		}
		if c.log.await(ctx, max(timeout-time.Since(start), 0), func() bool { return c.log.hasReceived(i, h) }) {
			n++
		}
	}
	return n
}

// stop stops every node and returns the leader's peak RSS and the largest
// of the peers'.
func (c *cluster) stop() (leaderRSS, peerRSS int64, err error) {
	var errs []error
	for _, p := range c.peers {
		errs = append(errs, p.Stop())
		peerRSS = max(peerRSS, p.PeakRSS())
	}
	errs = append(errs, c.leader.Stop())
	return c.leader.PeakRSS(), peerRSS, errors.Join(errs...)
}

func (c *cluster) kill() {
	for _, p := range c.peers {
		p.Kill()
	}
	c.leader.Kill()
}

// Propagate runs the propagate scenario runs times.
func Propagate(ctx context.Context, sup *Supervisor, cfg PropagateConfig, runs int) (rep *ScenarioReport, err error) {
	rep = NewScenarioReport("propagate", runs, map[string]any{
		"peers": cfg.Peers, "duration": cfg.Duration.String(), "rate": cfg.Rate, "batch": cfg.Batch,
		"small_blocks": cfg.SmallBlocks, "max_block_messages": cfg.MaxBlockMessages,
		"fill_interval": cfg.FillInterval.String(), "content_bytes": cfg.ContentBytes,
	})
	// On the way out, whatever ends the runs: an invariant a run broke is
	// judged even if a later run fails.
	defer func() { propagateTargets(&cfg, rep, err != nil) }()
	from, to := cfg.loadRange()
	if err := checkPoolSize(max(to, float64(cfg.MaxBlockMessages)), cfg.ContentBytes); err != nil {
		return rep, fmt.Errorf("bench: propagate: %s messages are %w", messageCount(max(to, float64(cfg.MaxBlockMessages))), err) // Validate was not called
	}
	loadFrom, loadTo := int(from), int(to)
	pool := NewPool(cfg.ContentBytes, "propagate")
	sup.Progressf("propagate: signing %d messages (not timed)", max(loadTo, cfg.MaxBlockMessages))
	if err := pool.Grow(ctx, max(loadTo, cfg.MaxBlockMessages)); err != nil {
		return rep, err
	}
	for run := 1; run <= runs; run++ {
		if err := propagateRun(ctx, sup, &cfg, rep, pool, loadFrom, loadTo, run, runs); err != nil {
			return rep, err
		}
		if err := fullBlockRun(ctx, sup, &cfg, rep, pool, run, runs); err != nil {
			return rep, err
		}
	}
	rep.Notef("delay = the peer's \"Stored blocks\" log time (run at --log-level debug) − the leader's \"Produced block\" log time; both have millisecond precision, so each delay is within ±1 ms")
	rep.Notef("small = blocks of exactly 1 message (one sent mid-interval, no other load); large = blocks of 1,000 messages or more, under a %.0f msgs/s open-loop load in batches of %d; samples are block × peer pairs; delivery = the leader's commit to the peer's receipt by gossip (its \"Received block by gossip\" line, after decoding), peer_store = that receipt to the peer's synced commit (checks and write); both from the nodes' log timestamps, which have millisecond resolution", cfg.Rate, cfg.Batch)
	rep.Notef("full_block: a second cluster with --block-interval %v; %d messages are submitted right after a block, and the next block must hold them all and reach every peer by gossip: peers_reached_by_gossip counts the peers that logged \"Received block by gossip\" for it and stored it; a peer that got it only by catch-up over HTTP (peers poll the leader every second) does not count", cfg.FillInterval, cfg.MaxBlockMessages)
	rep.Notef("acked_missing and committed_twice: once the leader's queue has drained, its chain is read back; every message acknowledged (the one-message blocks' and the load's; full_block.: the full block's) must be in it, and none twice")
	return rep, nil
}

// propagateTargets sets the invariants and, after runs that all succeeded
// (not failed), the p99 target of issue #4, which is stated for 3 peers.
func propagateTargets(cfg *PropagateConfig, rep *ScenarioReport, failed bool) {
	if cfg.Peers == 3 && !failed {
		rep.Target("large.p99", "ms", Target{Op: "<=", Value: targetPropagateP99, Note: "1,000+-message blocks, 3 peers"})
	}
	rep.Invariant("not_reached", "blocks", Target{Op: "==", Value: 0}, failed)
	chainTargets(rep, "", failed)
	// A block that took fewer messages than it may hold is not the block
	// the scenario is about: the verdict on its reaching the peers says
	// nothing about the largest block.
	rep.Invariant("full_block.messages", "msgs", Target{Op: "==", Value: float64(cfg.MaxBlockMessages)}, failed)
	rep.Invariant("full_block.peers_reached_by_gossip", "peers", Target{Op: "==", Value: float64(cfg.Peers), Note: "every peer, by gossip"}, failed)
	chainTargets(rep, "full_block.", failed)
}

func propagateRun(ctx context.Context, sup *Supervisor, cfg *PropagateConfig, rep *ScenarioReport, pool *Pool, loadFrom, loadTo, run, runs int) error {
	c, err := startCluster(ctx, sup, cfg.Peers, []string{"--leader", "--test-mode", "--max-block-messages", fmt.Sprint(cfg.MaxBlockMessages)})
	if err != nil {
		return err
	}
	defer c.kill()
	// Warm up: every peer in step, then a second for the gossip mesh.
	if _, err := c.synced(ctx, 30*time.Second); err != nil {
		return err
	}
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	mark, err := c.synced(ctx, 30*time.Second)
	if err != nil {
		return err
	}

	// One-message blocks: one message half an interval after each block.
	sub, err := newSubmitter(ctx, c.leader.URL, 1)
	if err != nil {
		return err
	}
	defer sub.close()
	for i := range cfg.SmallBlocks {
		if _, err := c.log.nextProduced(ctx, 10*time.Second); err != nil {
			return err
		}
		time.Sleep(propagateInterval / 2)
		codes, err := sub.post(ctx, "/message", pool.Body(i), 1)
		if err == nil && codes[0] != 0 {
			err = fmt.Errorf("HTTP %d", codes[0])
		}
		if err != nil {
			return fmt.Errorf("bench: submit: %w", err)
		}
	}
	// The last one's block, before the load starts.
	if cfg.SmallBlocks > 0 {
		if _, err := c.log.nextProduced(ctx, 10*time.Second); err != nil {
			return err
		}
	}
	// Large blocks: an open-loop load.
	lr, err := RunLoad(ctx, pool, LoadSpec{
		URL: c.leader.URL, Batch: cfg.Batch, Clients: propagateClients, Duration: cfg.Duration, Rate: cfg.Rate,
		From: loadFrom, To: loadTo,
	})
	if err != nil {
		return err
	}
	tip, err := waitDrained(ctx, c.leader.Client, time.Minute)
	if err != nil {
		return err
	}
	// Give every peer the time to store the tip; one that does not is reported.
	c.settle(ctx, tip, 10*time.Second)
	counts, delays := c.log.delays(mark, tip)
	// Before reading the chain back adds its own.
	leaderRSS := c.leader.SampleRSS()
	in, err := findMessages(ctx, c.leader.Client, pool, 0, loadTo, tip)
	if err != nil {
		return err
	}
	// Each one-message block's message was acknowledged, or the run stopped.
	acked := func(i int) bool { return i < cfg.SmallBlocks || lr.IsAcked(i) }
	var small, large, all, delivery, peerWork []float64
	notReached, smallBlocks, largeBlocks := 0, 0, 0
	for b, n := range counts {
		switch {
		case n == 1:
			smallBlocks++
		case n >= 1000:
			largeBlocks++
		}
		for _, d := range delays[b] {
			if math.IsNaN(d.stored) {
				notReached++
				continue
			}
			all = append(all, d.stored)
			switch {
			case n == 1:
				small = append(small, d.stored)
			case n >= 1000:
				large = append(large, d.stored)
				if !math.IsNaN(d.received) {
					delivery = append(delivery, d.received)
					peerWork = append(peerWork, d.stored-d.received)
				}
			}
		}
	}
	_, peerRSS, err := c.stop()
	if err != nil {
		return err
	}
	rep.Add("small.p50", "ms", Percentile(small, 50))
	rep.Add("small.p99", "ms", Percentile(small, 99))
	rep.Add("small.samples", "samples", float64(len(small)))
	rep.Add("large.p50", "ms", Percentile(large, 50))
	rep.Add("large.p99", "ms", Percentile(large, 99))
	rep.Add("large.samples", "samples", float64(len(large)))
	rep.Add("large.delivery_p50", "ms", Percentile(delivery, 50))
	rep.Add("large.delivery_p99", "ms", Percentile(delivery, 99))
	rep.Add("large.peer_store_p50", "ms", Percentile(peerWork, 50))
	rep.Add("large.peer_store_p99", "ms", Percentile(peerWork, 99))
	rep.Add("all.p99", "ms", Percentile(all, 99))
	rep.Add("all.max", "ms", Percentile(all, 100))
	rep.Add("not_reached", "blocks", float64(notReached))
	ackedMissing := addChainChecks(rep, "", in, acked)
	rep.Add("load_accepted_per_s", "msg/s", float64(lr.Acked)/lr.Seconds())
	rep.Add("leader_peak_rss", "MB", float64(leaderRSS)/(1<<20))
	rep.Add("peer_peak_rss", "MB", float64(peerRSS)/(1<<20))
	if lr.Refused+lr.Failed > 0 {
		rep.Notef("run %d: the load had %d messages refused and %d unanswered (%s)", run, lr.Refused, lr.Failed, lr.FirstError)
	}
	if in.foreign > 0 {
		rep.Notef("run %d: the chain holds %d messages not sent by this run", run, in.foreign)
	}
	sup.Progressf("propagate run %d/%d: %d one-message blocks p99 %.1f ms, %d large blocks p99 %.1f ms (max %.1f), not reached %d, acked-but-missing %d",
		run, runs, smallBlocks, Percentile(small, 99), largeBlocks, Percentile(large, 99), Percentile(large, 100), notReached, ackedMissing)
	name := fmt.Sprintf("propagate run %d", run)
	if err := checkWork(name, lr.Acked, in.confirmed, loadSummary(lr)); err != nil {
		return err
	}
	if largeBlocks == 0 {
		// large.* are what the scenario is for, and would be empty.
		return &NoWorkError{Run: name, What: fmt.Sprintf("no block held 1,000 messages or more (%d of %d messages offered at %g msgs/s were acknowledged; blocks of %v hold 1,000 from %s msgs/s)",
			lr.Acked, lr.Sent, cfg.Rate, propagateInterval, thousands(int64(1000/propagateInterval.Seconds())))}
	}
	return nil
}

// fullBlockRun checks that a block of MaxBlockMessages messages reaches
// every peer, on a cluster whose leader seals every FillInterval.
func fullBlockRun(ctx context.Context, sup *Supervisor, cfg *PropagateConfig, rep *ScenarioReport, pool *Pool, run, runs int) error {
	c, err := startCluster(ctx, sup, cfg.Peers, []string{"--leader", "--block-interval", cfg.FillInterval.String(), "--max-block-messages", fmt.Sprint(cfg.MaxBlockMessages)})
	if err != nil {
		return err
	}
	defer c.kill()
	// A first block, stored by every peer, shows the cluster is linked;
	// the messages go right after it, to land in the next.
	wait := 2*cfg.FillInterval + 10*time.Second
	first, err := c.log.nextProduced(ctx, wait)
	if err != nil {
		return err
	}
	for _, p := range c.peers {
		if _, err := waitHeight(ctx, p.Client, first, wait); err != nil {
			return err
		}
	}
	submitStart := time.Now()
	acked, err := submitAll(ctx, c.leader.URL, pool, 0, cfg.MaxBlockMessages, 1000, propagateClients)
	if err != nil {
		return err
	}
	submitted := time.Since(submitStart)
	full, err := c.log.nextProduced(ctx, wait)
	if err != nil {
		return err
	}
	nAcked := countTrue(acked)
	worst := 0.0
	reached := c.reachedByGossip(ctx, full, 10*time.Second)
	counts, delays := c.log.delays(full-1, full)
	n := 0
	if len(counts) == 1 {
		n = counts[0]
		for _, d := range delays[0] {
			if !math.IsNaN(d.stored) {
				worst = max(worst, d.stored)
			}
		}
	}
	// Every message acknowledged is sealed once the queue has drained: in
	// this block, or in a later one if this one did not take them all.
	height, err := waitDrained(ctx, c.leader.Client, wait)
	if err != nil {
		return err
	}
	in, err := findMessages(ctx, c.leader.Client, pool, 0, cfg.MaxBlockMessages, height)
	if err != nil {
		return err
	}
	if _, _, err := c.stop(); err != nil {
		return err
	}
	rep.Add("full_block.messages", "msgs", float64(n))
	rep.Add("full_block.peers_reached_by_gossip", "peers", float64(reached))
	rep.Add("full_block.max", "ms", worst)
	ackedMissing := addChainChecks(rep, "full_block.", in, func(i int) bool { return acked[i] })
	if n != cfg.MaxBlockMessages {
		rep.Notef("run %d: the full block held %d messages, not %d: %d were acknowledged in %v, against a block interval of %v (raise --fill-interval)",
			run, n, cfg.MaxBlockMessages, nAcked, submitted.Round(time.Millisecond), cfg.FillInterval)
	}
	if in.foreign > 0 {
		rep.Notef("run %d: the full block's chain holds %d messages not sent by this run", run, in.foreign)
	}
	sup.Progressf("propagate run %d/%d: a block of %d messages reached %d of %d peers by gossip, the last stored after %.1f ms; acked-but-missing %d", run, runs, n, reached, cfg.Peers, worst, ackedMissing)
	return checkWork(fmt.Sprintf("propagate full block run %d", run), nAcked, in.confirmed, fmt.Sprintf("%d sent", cfg.MaxBlockMessages))
}

// submitAll sends messages [from, to) of pool in batches of at most
// batch, clients requests at a time, and returns which were acknowledged:
// acked[i-from] for message i.
func submitAll(ctx context.Context, url string, pool *Pool, from, to, batch, clients int) ([]bool, error) {
	sub, err := newSubmitter(ctx, url, clients)
	if err != nil {
		return nil, err
	}
	defer sub.close()
	var (
		mu       sync.Mutex
		acked    = make([]bool, to-from)
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, clients)
	for lo := from; lo < to; lo += batch {
		hi := min(lo+batch, to)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			path, body := "/messages", batchBody(pool.bodies[lo:hi])
			if hi-lo == 1 {
				path, body = "/message", pool.Body(lo)
			}
			codes, err := sub.post(ctx, path, body, hi-lo)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("bench: submit: %w", err)
			}
			for j, c := range codes {
				acked[lo-from+j] = c == 0
			}
		}()
	}
	wg.Wait()
	return acked, firstErr
}
