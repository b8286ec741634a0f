package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
)

// fakeNode is a node whose GET /height answers height, and nothing else:
// enough for the waits on a cluster.
type fakeNode struct {
	*Node
	height atomic.Uint64
}

func newFakeNode(t *testing.T, name string, height uint64) *fakeNode {
	t.Helper()
	f := &fakeNode{}
	f.height.Store(height)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/height" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(api.Height{Height: f.height.Load()})
	}))
	t.Cleanup(srv.Close)
	f.Node = &Node{Name: name, URL: srv.URL, Client: api.NewClient(srv.URL)}
	t.Cleanup(f.Client.CloseIdleConnections)
	return f
}

// fakeCluster is a leader and peers that answer GET /height with height.
func fakeCluster(t *testing.T, peers int, height uint64) *cluster {
	t.Helper()
	c := &cluster{leader: newFakeNode(t, "leader", height).Node, log: newCommitLog(peers)}
	for i := range peers {
		c.peers = append(c.peers, newFakeNode(t, fmt.Sprintf("peer%d", i+1), height).Node)
	}
	return c
}

// logAt feeds a log line, stamped at, to fn as a node's log reader would.
func logAt(fn func(*LogLine), at time.Time, format string, args ...any) {
	l := ParseLogLine("time=" + at.UTC().Format(time.RFC3339Nano) + " " + fmt.Sprintf(format, args...))
	l.Arrived = time.Now()
	fn(&l)
}

// A peer counts as reached by the full block only if gossip brought it:
// one that stored it by catch-up over HTTP alone (gossip dropped it) is not
// reached, although its height is the block's; one that caught up first
// and then received the block by gossip is.
func TestFullBlockCountsOnlyPeersReachedByGossip(t *testing.T) {
	const full = 5
	c := fakeCluster(t, 3, full)
	t0 := time.Now()
	logAt(c.log.onLeader, t0, `level=INFO msg="Produced block %d with 10000 messages"`, full)
	// peer1: by gossip.
	logAt(c.log.onPeer(0), t0.Add(3*time.Millisecond), `level=DEBUG msg="Received block by gossip" height=%d bytes=1500000 messages=10000`, full)
	logAt(c.log.onPeer(0), t0.Add(9*time.Millisecond), `level=DEBUG msg="Stored blocks" from=%d to=%d via=gossip messages=10000`, full, full)
	// peer2: gossip dropped it; the next poll caught it up.
	logAt(c.log.onPeer(1), t0.Add(900*time.Millisecond), `level=DEBUG msg="Stored blocks" from=%d to=%d via=catch-up messages=10000`, full, full)
	// peer3: caught up first, the gossip came after.
	logAt(c.log.onPeer(2), t0.Add(5*time.Millisecond), `level=DEBUG msg="Stored blocks" from=%d to=%d via=catch-up messages=10000`, full, full)
	logAt(c.log.onPeer(2), t0.Add(8*time.Millisecond), `level=DEBUG msg="Received block by gossip" height=%d bytes=1500000 messages=10000`, full)

	if got := c.reachedByGossip(t.Context(), full, 300*time.Millisecond); got != 2 {
		t.Errorf("reachedByGossip = %d, want 2 (peer2 has the block by catch-up only)", got)
	}
}

// A peer's delay splits into delivery and its own work only for a block it
// stored from the gossip it received: one that catch-up stored first, its
// receipt logged after the store, has no split (it would be negative).
func TestDelaysSplitOnlyBlocksStoredByGossip(t *testing.T) {
	c := newCommitLog(2)
	t0 := time.Now()
	logAt(c.onLeader, t0, `level=INFO msg="Produced block 7 with 1200 messages"`)
	logAt(c.onPeer(0), t0.Add(3*time.Millisecond), `level=DEBUG msg="Received block by gossip" height=7 bytes=180000 messages=1200`)
	logAt(c.onPeer(0), t0.Add(9*time.Millisecond), `level=DEBUG msg="Stored blocks" from=7 to=7 via=gossip messages=1200`)
	logAt(c.onPeer(1), t0.Add(5*time.Millisecond), `level=DEBUG msg="Stored blocks" from=6 to=7 via=catch-up messages=2400`)
	logAt(c.onPeer(1), t0.Add(8*time.Millisecond), `level=DEBUG msg="Received block by gossip" height=7 bytes=180000 messages=1200`)

	counts, delays := c.delays(6, 7)
	if len(counts) != 1 || counts[0] != 1200 {
		t.Fatalf("counts %v, want [1200]", counts)
	}
	if d := delays[0][0]; d.stored != 9 || d.received != 3 {
		t.Errorf("peer1 (by gossip): stored %v received %v, want 9 and 3", d.stored, d.received)
	}
	if d := delays[0][1]; d.stored != 5 || !math.IsNaN(d.received) {
		t.Errorf("peer2 (by catch-up): stored %v received %v, want 5 and no receipt", d.stored, d.received)
	}
}

// A peer whose /height never reaches the block is not reached, whatever
// its log says.
func TestFullBlockNotReachedBelowTheBlock(t *testing.T) {
	c := fakeCluster(t, 1, 4)
	logAt(c.log.onPeer(0), time.Now(), `level=DEBUG msg="Received block by gossip" height=5 bytes=1500000 messages=10000`)
	if got := c.reachedByGossip(t.Context(), 5, 200*time.Millisecond); got != 0 {
		t.Errorf("reachedByGossip = %d for a peer at height 4, want 0", got)
	}
}

// The nodes' APIs show the tip before this benchmark has read their log
// lines about it: settle waits for the lines, so that the tip's samples
// are there rather than missing (the leader's line) or counted as not
// reached (a peer's).
func TestSettleWaitsForTheTipsLogLines(t *testing.T) {
	const mark, tip = 5, 7
	c := fakeCluster(t, 2, tip)
	t0 := time.Now()
	logAt(c.log.onLeader, t0, `level=INFO msg="Produced block 6 with 1200 messages"`)
	for i := range c.peers {
		logAt(c.log.onPeer(i), t0.Add(4*time.Millisecond), `level=DEBUG msg="Stored blocks" from=6 to=6 via=gossip messages=1200`)
	}
	// The tip's lines are read a little after its height is served.
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		time.Sleep(150 * time.Millisecond)
		logAt(c.log.onLeader, t0.Add(100*time.Millisecond), `level=INFO msg="Produced block %d with 1300 messages"`, tip)
		for i := range c.peers {
			logAt(c.log.onPeer(i), t0.Add(106*time.Millisecond), `level=DEBUG msg="Stored blocks" from=%d to=%d via=gossip messages=1300`, tip, tip)
		}
	}()
	c.settle(t.Context(), tip, 2*time.Second)
	counts, delays := c.log.delays(mark, tip)
	<-lines
	if len(counts) != 2 || counts[1] != 1300 {
		t.Fatalf("blocks after settle: counts %v, want [1200 1300]", counts)
	}
	for i, d := range delays[1] {
		if math.IsNaN(d.stored) || d.stored != 6 {
			t.Errorf("tip's delay at peer%d: %v ms, want 6", i+1, d.stored)
		}
	}
}
