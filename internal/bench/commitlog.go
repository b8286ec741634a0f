package bench

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// commitLog collects, from the nodes' logs, when each block was committed:
// the leader's "Produced block H with N messages", logged right after the
// commit, and each peer's debug "Stored blocks from=A to=B via=V" (which
// stores A..B in one batch); and when each peer received a block by gossip,
// its debug "Received block by gossip" height=H, which splits a delay into
// delivery and the peer's own work.
type commitLog struct {
	mu       sync.Mutex
	leader   map[uint64]time.Time
	count    map[uint64]int
	peers    []map[uint64]time.Time
	received []map[uint64]time.Time
	caughtUp []map[uint64]bool // heights a peer stored by catch-up, not by gossip
	produced chan uint64       // heights as produced; sends never block, so it may miss some
}

func newCommitLog(peers int) *commitLog {
	c := &commitLog{leader: map[uint64]time.Time{}, count: map[uint64]int{}, produced: make(chan uint64, 256)}
	for range peers {
		c.peers = append(c.peers, map[uint64]time.Time{})
		c.received = append(c.received, map[uint64]time.Time{})
		c.caughtUp = append(c.caughtUp, map[uint64]bool{})
	}
	return c
}

func (c *commitLog) onLeader(l *LogLine) {
	h, n, ok := l.ProducedBlock()
	if !ok {
		return
	}
	c.mu.Lock()
	c.leader[h], c.count[h] = l.When(), n
	c.mu.Unlock()
	select {
	case c.produced <- h:
	default:
	}
}

func (c *commitLog) onPeer(i int) func(*LogLine) {
	return func(l *LogLine) {
		if h, ok := l.ReceivedBlock(); ok {
			c.mu.Lock()
			if _, seen := c.received[i][h]; !seen {
				c.received[i][h] = l.When()
			}
			c.mu.Unlock()
			return
		}
		from, to, ok := l.StoredBlocks()
		if !ok {
			return
		}
		gossip := l.Attrs["via"] == "gossip"
		c.mu.Lock()
		for h := from; h <= to; h++ {
			if _, seen := c.peers[i][h]; !seen {
				c.peers[i][h] = l.When()
				c.caughtUp[i][h] = !gossip
			}
		}
		c.mu.Unlock()
	}
}

// producedMs is when the leader logged block h as committed, in
// milliseconds since the epoch; its log must have been read to the end
// (the leader stopped) or past that line.
func (c *commitLog) producedMs(h uint64) (float64, error) {
	c.mu.Lock()
	t, ok := c.leader[h]
	c.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("bench: the leader's log has no \"Produced block %d\" line", h)
	}
	return float64(t.UnixMicro()) / 1000, nil
}

// nextProduced waits for a block produced after the call and returns its height.
func (c *commitLog) nextProduced(ctx context.Context, timeout time.Duration) (uint64, error) {
	for drained := false; !drained; {
		select {
		case <-c.produced:
		default:
			drained = true
		}
	}
	select {
	case h := <-c.produced:
		return h, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(timeout):
		return 0, fmt.Errorf("bench: the leader produced no block within %v", timeout)
	}
}

// peerDelay is one peer's timing of one block, in ms after the leader's
// commit; NaN where the log has no line for it.
type peerDelay struct {
	stored   float64 // the peer's commit
	received float64 // its receipt by gossip; NaN if the peer stored it by catch-up
}

// delays returns, for each block in (after, upTo], its message count and
// each peer's delays.
func (c *commitLog) delays(after, upTo uint64) (counts []int, delays [][]peerDelay) {
	c.mu.Lock()
	defer c.mu.Unlock()
	since := func(lt time.Time, m map[uint64]time.Time, h uint64) float64 {
		if t, ok := m[h]; ok {
			return float64(t.Sub(lt).Microseconds()) / 1000
		}
		return math.NaN()
	}
	for h := after + 1; h <= upTo; h++ {
		lt, ok := c.leader[h]
		if !ok {
			continue
		}
		d := make([]peerDelay, len(c.peers))
		for i := range c.peers {
			d[i] = peerDelay{stored: since(lt, c.peers[i], h), received: math.NaN()}
			// A receipt counts only for a block stored from it: one that
			// catch-up stored first has a receipt logged after its store.
			if !c.caughtUp[i][h] {
				d[i].received = since(lt, c.received[i], h)
			}
		}
		counts = append(counts, c.count[h])
		delays = append(delays, d)
	}
	return counts, delays
}

// logLag bounds how long a node's log line about a block may trail its
// HTTP API showing the block: the line is written after the commit, and
// read by this benchmark in its own time.
const logLag = 5 * time.Second

// await polls the log until cond (called with the lock held) holds, and
// reports whether it did within timeout. A node's API can show a block
// before this benchmark has read the node's log line about it, so a figure
// read from the log right after a wait over HTTP waits for the line too.
func (c *commitLog) await(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		ok := cond()
		c.mu.Unlock()
		if ok {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(pollEvery / 4):
		}
	}
}

// hasProduced, hasStored and hasReceived say whether the log has the
// leader's "Produced block" line for block h, and peer i's "Stored blocks"
// and "Received block by gossip" lines for it. The caller holds c.mu.
func (c *commitLog) hasProduced(h uint64) bool { _, ok := c.leader[h]; return ok }

func (c *commitLog) hasStored(i int, h uint64) bool { _, ok := c.peers[i][h]; return ok }

func (c *commitLog) hasReceived(i int, h uint64) bool { _, ok := c.received[i][h]; return ok }
