package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
)

// Process tests of the peer role: a leader in test mode (a block every
// 100ms) and peers started with --leader-rpc, judged through their HTTP API,
// exit codes, data directory and the SPEC's log lines.

// Timing of the peer tests.
const (
	// syncTimeout bounds a peer reaching a height the leader already has:
	// by gossip, or by the peer's poll of the leader every second.
	syncTimeout = 5 * time.Second
	// rejoinTimeout bounds a peer finding a leader that was away: the
	// peer's poll notices the loss within 1s, then it retries with a
	// backoff that doubles from 100ms up to 2s.
	rejoinTimeout = 8 * time.Second
)

// startPeer starts a peer of leader (--leader-rpc leader.URL()) with the
// extra args and waits until it serves.
func startPeer(t testing.TB, leader *Node, extra ...string) *Node {
	t.Helper()
	return startNode(t, append([]string{"--leader-rpc", leader.URL()}, extra...)...)
}

// heightOf is n's GET /height; it fails the test on an error.
func heightOf(t testing.TB, n *Node) uint64 {
	t.Helper()
	ht, err := n.Client().Height(context.Background())
	if err != nil {
		t.Fatalf("%s: GET /height: %v", n, err)
	}
	return ht.Height
}

// sameBlocks reads blocks from..to from want and from got with GET
// /block/{h} and fails the test unless every one is identical (hash,
// signature, header, message_ids). It returns got's blocks.
func sameBlocks(t testing.TB, want, got *Node, from, to uint64) []api.Block {
	t.Helper()
	wb := blocksUpTo(t, want, from, to)
	gb := blocksUpTo(t, got, from, to)
	bad := 0
	for i := range wb {
		if !reflect.DeepEqual(wb[i], gb[i]) {
			if bad++; bad <= 3 {
				t.Errorf("block %d differs:\n%s has %+v\n%s has %+v", wb[i].Height, got, gb[i], want, wb[i])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of blocks %d..%d differ", bad, from, to)
	}
	return gb
}

// submitAll submits msgs to n in one POST /messages and fails the test
// unless each is accepted. It returns their IDs.
func submitAll(t testing.TB, n *Node, msgs []chain.Message) []chain.Hash {
	t.Helper()
	results, err := n.Client().SubmitBatch(context.Background(), msgs)
	if err != nil {
		t.Fatalf("%s: POST /messages: %v", n, err)
	}
	if len(results) != len(msgs) {
		t.Fatalf("%s: POST /messages: %d results for %d messages", n, len(results), len(msgs))
	}
	ids := make([]chain.Hash, len(msgs))
	for i, r := range results {
		if r.Error != "" || r.ID == nil || *r.ID != msgs[i].ID() || r.Status != api.StatusPending {
			t.Fatalf("%s: POST /messages result %d: %+v, want id %s pending", n, i, r, msgs[i].ID())
		}
		ids[i] = msgs[i].ID()
	}
	return ids
}

// signed returns count messages of key with nonces from first on.
func signed(key ed25519.PrivateKey, first uint64, count int, what string) []chain.Message {
	out := make([]chain.Message, count)
	for i := range out {
		nonce := first + uint64(i)
		out[i] = chain.SignMessage(key, nonce, fmt.Sprintf("%s %d", what, nonce))
	}
	return out
}

// sameContent reports how a served message differs from the one signed.
func sameContent(got *api.Message, want *chain.Message) error {
	if got.ID != want.ID() || !bytes.Equal(got.Sender, want.Sender[:]) || got.Nonce != want.Nonce ||
		got.Content != want.Content || !bytes.Equal(got.Signature, want.Signature[:]) {
		return fmt.Errorf("served id %s, nonce %d, content %q; signed id %s, nonce %d, content %q",
			got.ID, got.Nonce, got.Content, want.ID(), want.Nonce, want.Content)
	}
	return nil
}

// submissionBody is the JSON body of POST /message for m.
func submissionBody(t testing.TB, m *chain.Message) []byte {
	t.Helper()
	b, err := json.Marshal(api.NewSubmission(m))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// batchBody is the JSON body of POST /messages for msgs.
func batchBody(t testing.TB, msgs []chain.Message) []byte {
	t.Helper()
	req := struct {
		Messages []api.Submission `json:"messages"`
	}{}
	for i := range msgs {
		req.Messages = append(req.Messages, api.NewSubmission(&msgs[i]))
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// errorAnswer checks that r is an error answer of status code with a JSON
// body {"error": "reason", ...} and returns the body's "id", if any.
func errorAnswer(t testing.TB, what string, r httpResult, code int) *chain.Hash {
	t.Helper()
	if r.Code != code {
		t.Fatalf("%s: %d %s, want %d", what, r.Code, r.Body, code)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var eb struct {
		Error string      `json:"error"`
		ID    *chain.Hash `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error == "" {
		t.Errorf("%s: body %q is not {\"error\": \"reason\"} (%v)", what, r.Body, err)
	}
	return eb.ID
}

// waitGossipAbove waits until peer logs a block above height received by
// gossip: one that only a leader that made blocks past height can have sent.
func waitGossipAbove(t testing.TB, peer *Node, height uint64, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("\"Received block by gossip\" above height %d in the log of %s", height, peer), func() error {
		if peer.Exited() {
			t.Fatalf("%s exited (code %d)", peer, peer.exitCode)
		}
		if h, ok := lastGossiped(peer.Logs()); !ok || h <= height {
			return fmt.Errorf("last gossiped height %d (%v)", h, ok)
		}
		return nil
	})
}

// gossipedRE matches a peer's debug line for a block that came by gossip,
// as the node writes it (slog's text form): msg="Received block by gossip"
// height=H bytes=B messages=M.
var gossipedRE = regexp.MustCompile(`msg="Received block by gossip" height=(\d+) `)

// lastGossiped is the greatest height of a "Received block by gossip" line
// of a log.
func lastGossiped(logs string) (uint64, bool) {
	var (
		top   uint64
		found bool
	)
	for _, m := range gossipedRE.FindAllStringSubmatch(logs, -1) {
		if h, err := strconv.ParseUint(m[1], 10, 64); err == nil && (!found || h > top) {
			top, found = h, true
		}
	}
	return top, found
}

// leaderGoneLog is what a peer logs when its poll finds the leader gone
// (README "When the leader is away"); the tests wait for it so that they
// check the peer's reads after it has noticed, not before.
const leaderGoneLog = "leader unreachable"

// TestPeerReceivesBlocks: a peer reaches the leader's height and holds the
// same blocks (hash, signature, message_ids), and a message submitted to the
// leader shows in the peer's copy of its block.
func TestPeerReceivesBlocks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	leader := startNode(t, "--leader", "--test-mode")
	peer := startPeer(t, leader)

	lh, ph := leader.Health(), peer.Health()
	if ph.Status != "ok" || ph.Role != "peer" || ph.GenesisHash != chain.GenesisHash {
		t.Errorf("peer /health: status %q, role %q, genesis_hash %s; want ok, peer, %s", ph.Status, ph.Role, ph.GenesisHash, chain.GenesisHash)
	}
	if ph.PeerID == "" || ph.PeerID == lh.PeerID {
		t.Errorf("peer /health: peer_id %q, the leader's is %q: want its own", ph.PeerID, lh.PeerID)
	}

	m := chain.SignMessage(newSender(t), 1, "to be seen on the peer")
	if _, err := leader.Client().Submit(ctx, &m); err != nil {
		t.Fatal(err)
	}
	lm := waitConfirmed(t, leader, m.ID(), syncTimeout)
	tip := max(heightOf(t, leader), *lm.BlockHeight, 5)
	peer.WaitHeight(tip, syncTimeout)

	blocks := sameBlocks(t, leader, peer, 0, tip)
	checkChain(t, blocks)
	for _, b := range blocks[1:] {
		if got := peerIDOf(b.Producer); got != lh.PeerID {
			t.Errorf("peer's block %d: producer %s, the leader is %s", b.Height, got, lh.PeerID)
		}
	}
	pb := blocks[*lm.BlockHeight]
	if i := int(*lm.Index); i >= len(pb.MessageIDs) || pb.MessageIDs[i] != m.ID() {
		t.Errorf("peer's block %d: message_ids %v, want %s at index %d", pb.Height, pb.MessageIDs, m.ID(), i)
	}
}

// TestMultiPeerSync: a leader and two peers hold the same block at every
// height up to a common one, and their /height converges.
func TestMultiPeerSync(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	leader := startNode(t, "--leader", "--test-mode")
	p1 := launchNode(t, "--leader-rpc", leader.URL())
	p2 := launchNode(t, "--leader-rpc", leader.URL())
	p1.waitReady()
	p2.waitReady()
	submitAll(t, leader, signed(newSender(t), 1, 3, "multi-peer"))
	nodes := []*Node{leader, p1, p2}

	// The tip moves every 100ms: poll until all three report the same one.
	var common api.Height
	eventually(t, syncTimeout, "the same /height on the leader and both peers at 10 or above", func() error {
		var hs []api.Height
		for _, n := range nodes {
			if n.Exited() {
				t.Fatalf("%s exited with code %d", n, n.exitCode)
			}
			ht, err := n.Client().Height(ctx)
			if err != nil {
				return err
			}
			hs = append(hs, ht)
		}
		if hs[0].Height < 10 || hs[1] != hs[0] || hs[2] != hs[0] {
			return fmt.Errorf("leader %+v, peers %+v and %+v", hs[0], hs[1], hs[2])
		}
		common = hs[0]
		return nil
	})

	lb := blocksUpTo(t, leader, 0, common.Height)
	checkChain(t, lb)
	for _, p := range []*Node{p1, p2} {
		pb := blocksUpTo(t, p, 0, common.Height)
		for h := range lb {
			if pb[h].Hash != lb[h].Hash {
				t.Errorf("height %d: %s has hash %s, the leader %s", h, p, pb[h].Hash, lb[h].Hash)
			}
		}
	}
	if lb[common.Height].Hash != common.Hash {
		t.Errorf("/height said %d is %s, /block/%d has %s", common.Height, common.Hash, common.Height, lb[common.Height].Hash)
	}
}

// TestPeerRestartReplay: a peer stopped gracefully keeps its chain: on
// restart it verifies all of it, serves the same blocks, catches up with the
// leader, which moved on meanwhile, and fetches messages on demand with
// proofs against its own blocks; what it fetched is kept across the restart.
func TestPeerRestartReplay(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	leader := startNode(t, "--leader", "--test-mode")
	pdb := t.TempDir()
	peer := startPeer(t, leader, "--db-path", pdb)

	key := newSender(t)
	msgs := signed(key, 1, 3, "early")
	ids := submitAll(t, leader, msgs)
	// The later ones go in once the early ones are in a block, so the two
	// sets are in different blocks however slow the node is.
	early := *waitConfirmed(t, leader, ids[len(ids)-1], syncTimeout).BlockHeight
	leader.WaitHeight(max(10, early+1), syncTimeout)
	later := signed(key, 10, 2, "later")
	ids = append(ids, submitAll(t, leader, later)...)
	msgs = append(msgs, later...)
	heights := map[uint64]bool{}
	for _, id := range ids {
		heights[*waitConfirmed(t, leader, id, syncTimeout).BlockHeight] = true
	}
	if len(heights) < 2 {
		t.Fatalf("messages submitted before and after height 10 all landed in one block %v", heights)
	}
	leader.WaitHeight(20, syncTimeout)
	reached := peer.WaitHeight(20, syncTimeout)
	before := sameBlocks(t, leader, peer, 0, 20)

	// One message fetched before the stop: it is kept.
	kept, err := peer.Client().Message(ctx, ids[0])
	if err != nil || kept.Status != api.StatusConfirmed {
		t.Fatalf("peer: GET /message/%s: %+v, %v; want confirmed", ids[0], kept, err)
	}

	stopGracefully(t, peer)
	stoppedBelow := heightOf(t, leader) // the peer cannot have had more

	// Started again with no leader to ask (nothing listens on port 1), it
	// serves the message from what it kept.
	offline := startNode(t, "--db-path", pdb, "--leader-rpc", "http://127.0.0.1:1")
	if m, err := offline.Client().Message(ctx, ids[0]); err != nil || !reflect.DeepEqual(m, kept) {
		t.Errorf("peer restarted without a leader: GET /message/%s: %+v, %v; want what it fetched before, %+v", ids[0], m, err, kept)
	}
	stopGracefully(t, offline)
	leader.WaitHeight(stoppedBelow+5, syncTimeout)

	peer2 := startPeer(t, leader, "--db-path", pdb)
	n := logNumber(t, peer2, verifiedRE, time.Second)
	if n < 21 || n < reached+1 || n > stoppedBelow+1 {
		t.Errorf("restart: \"Chain integrity verified: %d blocks\"; before the stop the peer had %d..%d, so want %d..%d (and at least 21)",
			n, reached, stoppedBelow, reached+1, stoppedBelow+1)
	}
	if after := blocksUpTo(t, peer2, 0, 20); !reflect.DeepEqual(after, before) {
		t.Errorf("peer's blocks 0..20 changed across its restart:\nbefore %+v\nafter  %+v", before, after)
	}

	tip := heightOf(t, leader)
	if tip < stoppedBelow+5 {
		t.Fatalf("leader at %d, was at %d before", tip, stoppedBelow)
	}
	peer2.WaitHeight(tip, syncTimeout)
	checkChain(t, sameBlocks(t, leader, peer2, 0, tip))

	// Messages on demand, each checked against the peer's own block.
	served := map[chain.Hash]api.Message{}
	for i, id := range ids {
		m, err := peer2.Client().Message(ctx, id)
		if err != nil {
			t.Fatalf("restarted peer: GET /message/%s: %v", id, err)
		}
		if m.Status != api.StatusConfirmed {
			t.Fatalf("restarted peer: message %s is %q, want confirmed", id, m.Status)
		}
		checkConfirmed(t, peer2, &m)
		if err := sameContent(&m, &msgs[i]); err != nil {
			t.Errorf("restarted peer: %v", err)
		}
		served[id] = m
	}
	if !reflect.DeepEqual(served[ids[0]], kept) {
		t.Errorf("message %s: before the restart %+v, after %+v", ids[0], kept, served[ids[0]])
	}

	// Without the leader they are all still there, the one fetched before
	// the restart too.
	leader.Kill()
	for _, id := range ids {
		m, err := peer2.Client().Message(ctx, id)
		if err != nil {
			t.Errorf("restarted peer, leader killed: GET /message/%s: %v; it was fetched before", id, err)
		} else if !reflect.DeepEqual(m, served[id]) {
			t.Errorf("restarted peer, leader killed: message %s is %+v, was %+v", id, m, served[id])
		}
	}
}

// TestPeerForwardsSubmit: a peer passes POST /message and POST /messages to
// the leader and returns its answers (202 with the ID, 409 with the ID for a
// duplicate, 200 with the results); once the leader is gone it answers 503.
func TestPeerForwardsSubmit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	leader := startNode(t, "--leader", "--test-mode")
	peer := startPeer(t, leader)
	key := newSender(t)

	m := chain.SignMessage(key, 1, "submitted to the peer")
	r := peer.request(http.MethodPost, "/message", "application/json", submissionBody(t, &m))
	if r.Code != http.StatusAccepted {
		t.Fatalf("peer: POST /message: %d %s, want 202", r.Code, r.Body)
	}
	var acc api.Accepted
	if err := json.Unmarshal(r.Body, &acc); err != nil || acc.ID != m.ID() || acc.Status != api.StatusPending {
		t.Fatalf("peer: POST /message answered %s (%v), want id %s, status pending", r.Body, err, m.ID())
	}
	lm := waitConfirmed(t, leader, m.ID(), syncTimeout)
	checkConfirmed(t, leader, &lm)
	peer.WaitHeight(*lm.BlockHeight, syncTimeout)
	pm, err := peer.Client().Message(ctx, m.ID())
	if err != nil || pm.Status != api.StatusConfirmed {
		t.Fatalf("peer: GET /message/%s: %+v, %v; want confirmed", m.ID(), pm, err)
	}
	checkConfirmed(t, peer, &pm)
	if err := sameContent(&pm, &m); err != nil {
		t.Errorf("peer: %v", err)
	}

	dup := chain.SignMessage(key, 1, "same nonce, submitted to the peer again")
	r = peer.request(http.MethodPost, "/message", "application/json", submissionBody(t, &dup))
	if id := errorAnswer(t, "peer: POST /message of a duplicate", r, http.StatusConflict); id == nil || *id != m.ID() {
		t.Errorf("peer: 409 body %s: want \"id\" %s", r.Body, m.ID())
	}

	batch := signed(key, 2, 2, "batch through the peer")
	r = peer.request(http.MethodPost, "/messages", "application/json", batchBody(t, append(slices.Clone(batch), dup)))
	if r.Code != http.StatusOK {
		t.Fatalf("peer: POST /messages: %d %s, want 200", r.Code, r.Body)
	}
	var res struct {
		Results []api.Result `json:"results"`
	}
	if err := json.Unmarshal(r.Body, &res); err != nil || len(res.Results) != 3 {
		t.Fatalf("peer: POST /messages answered %s (%v), want 3 results", r.Body, err)
	}
	for i, b := range batch {
		if got := res.Results[i]; got.ID == nil || *got.ID != b.ID() || got.Status != api.StatusPending || got.Error != "" {
			t.Errorf("peer: POST /messages result %d: %+v, want id %s pending", i, got, b.ID())
		}
	}
	if got := res.Results[2]; got.Code != http.StatusConflict || got.ID == nil || *got.ID != m.ID() {
		t.Errorf("peer: POST /messages result 2 (duplicate): %+v, want code 409, id %s", got, m.ID())
	}
	for i, b := range batch {
		lm := waitConfirmed(t, leader, b.ID(), syncTimeout)
		peer.WaitHeight(*lm.BlockHeight, syncTimeout)
		pm, err := peer.Client().Message(ctx, b.ID())
		if err != nil || pm.Status != api.StatusConfirmed {
			t.Fatalf("peer: GET /message/%s: %+v, %v; want confirmed", b.ID(), pm, err)
		}
		checkConfirmed(t, peer, &pm)
		if err := sameContent(&pm, &batch[i]); err != nil {
			t.Errorf("peer: %v", err)
		}
	}

	leader.Kill()
	late := chain.SignMessage(key, 9, "the leader is gone")
	r = peer.request(http.MethodPost, "/message", "application/json", submissionBody(t, &late))
	errorAnswer(t, "peer: POST /message with the leader killed", r, http.StatusServiceUnavailable)
	r = peer.request(http.MethodPost, "/messages", "application/json", batchBody(t, []chain.Message{late}))
	errorAnswer(t, "peer: POST /messages with the leader killed", r, http.StatusServiceUnavailable)
	if peer.Exited() {
		t.Fatalf("%s exited with code %d when the leader was killed", peer, peer.exitCode)
	}
}

// TestPeerServesOnDemandMessageAfterLeaderKilled: a message a peer fetched
// once is kept: after the leader is killed the peer still serves it, the
// same; a message it never fetched is 503 (README: on-demand fetches answer
// 503 while the leader is away); its blocks and /health are still served.
func TestPeerServesOnDemandMessageAfterLeaderKilled(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	leader := startNode(t, "--leader", "--test-mode")
	peer := startPeer(t, leader)
	msgs := signed(newSender(t), 1, 3, "on demand")
	ids := submitAll(t, leader, msgs)
	var top uint64
	for _, id := range ids {
		top = max(top, *waitConfirmed(t, leader, id, syncTimeout).BlockHeight)
	}
	peer.WaitHeight(top, syncTimeout)

	fetched, err := peer.Client().Message(ctx, ids[0])
	if err != nil || fetched.Status != api.StatusConfirmed {
		t.Fatalf("peer: GET /message/%s: %+v, %v; want confirmed", ids[0], fetched, err)
	}
	blk := checkConfirmed(t, peer, &fetched)
	if err := sameContent(&fetched, &msgs[0]); err != nil {
		t.Fatal(err)
	}
	neverFetched := ids[1]

	leader.Kill()
	check := func(when string) {
		t.Helper()
		again, err := peer.Client().Message(ctx, ids[0])
		if err != nil {
			t.Errorf("%s: peer: GET /message/%s (fetched before): %v", when, ids[0], err)
		} else if !reflect.DeepEqual(again, fetched) {
			t.Errorf("%s: peer: message %s is %+v, was %+v", when, ids[0], again, fetched)
		}
		r := peer.request(http.MethodGet, "/message/"+neverFetched.String(), "", nil)
		errorAnswer(t, when+": peer: GET /message of a message it never fetched", r, http.StatusServiceUnavailable)
		if h, err := peer.Client().Health(ctx); err != nil || h.Status != "ok" || h.Role != "peer" || h.Height < top {
			t.Errorf("%s: peer: /health %+v, %v; want ok, peer, height >= %d", when, h, err, top)
		}
		if ht, err := peer.Client().Height(ctx); err != nil || ht.Height < top {
			t.Errorf("%s: peer: /height %+v, %v; want >= %d", when, ht, err, top)
		}
		if b, err := peer.Client().Block(ctx, blk.Height, false); err != nil || !reflect.DeepEqual(b, blk) {
			t.Errorf("%s: peer: GET /block/%d: %+v, %v; want %+v", when, blk.Height, b, err, blk)
		}
	}
	check("leader just killed")
	// And once the peer has noticed (its poll runs every second).
	peer.WaitLog(leaderGoneLog, 10*time.Second) // the peer polls each second
	check("leader gone, noticed")
}

// TestPeerCatchUpAfterGap: a peer started after the leader built 30 blocks
// catches up to its tip with the same blocks; while the leader is stopped
// the peer serves reads, and once the leader is back on its data directory
// the peer catches up by itself and gets blocks by gossip again.
func TestPeerCatchUpAfterGap(t *testing.T) {
	t.Parallel()
	ldb, addr := t.TempDir(), rebindableAddr(t)
	leader := startNode(t, "--leader", "--test-mode", "--db-path", ldb, "--rpc-addr", addr)
	submitAll(t, leader, signed(newSender(t), 1, 4, "before the peer"))
	leader.WaitHeight(30, 10*time.Second)

	peer := startPeer(t, leader, "--log-level", "debug")
	tip := heightOf(t, leader)
	peer.WaitHeight(tip, syncTimeout)
	checkChain(t, sameBlocks(t, leader, peer, 0, tip))

	// The leader goes away.
	stopGracefully(t, leader)
	stopped, ok := lastProduced(leader.Logs())
	if !ok {
		t.Fatal("the leader logged no \"Produced block\" line")
	}
	peer.WaitLog(leaderGoneLog, 10*time.Second) // the peer polls each second
	h := peer.Health()
	if h.Status != "ok" || h.Role != "peer" || h.Height < tip || h.Height > stopped {
		t.Errorf("peer /health with the leader stopped: %+v; want ok, peer, height %d..%d", h, tip, stopped)
	}
	if ht := heightOf(t, peer); ht < tip || ht > stopped {
		t.Errorf("peer /height with the leader stopped: %d, want %d..%d", ht, tip, stopped)
	}

	// The leader is back, at the same address: the peer catches up alone.
	leader2 := startNode(t, "--leader", "--test-mode", "--db-path", ldb, "--rpc-addr", addr)
	if leader2.URL() != leader.URL() {
		t.Fatalf("restarted leader serves on %s, want %s", leader2.URL(), leader.URL())
	}
	target := leader2.WaitHeight(stopped+3, syncTimeout)
	peer.WaitHeight(target, rejoinTimeout)
	checkChain(t, sameBlocks(t, leader2, peer, 0, target))
	// README: "reconnects the gossip link": a block by gossip that only the
	// restarted leader can have sent.
	waitGossipAbove(t, peer, stopped, syncTimeout)
}

// TestPeerRegainsGossipAfterFastLeaderRestart: a leader killed and back
// within one of the peer's polls listens for p2p on a new port (the default
// --listen-addr picks one at start). The peer, which may never have seen
// the leader gone, notices the lost link, asks the leader where it listens
// now and takes blocks by gossip again, not only by polling.
func TestPeerRegainsGossipAfterFastLeaderRestart(t *testing.T) {
	t.Parallel()
	ldb, addr := t.TempDir(), rebindableAddr(t)
	leader := startNode(t, "--leader", "--test-mode", "--db-path", ldb, "--rpc-addr", addr)
	peer := startPeer(t, leader, "--log-level", "debug")
	peer.WaitLog("Received block by gossip", syncTimeout)
	before := leader.Health().P2PAddrs

	leader.Kill()
	// Gossip the old leader sent before the kill may still be logged by the
	// peer after this point; only a block above the old leader's last one
	// can have come from the new leader. The old leader publishes a block
	// after logging it, so its final log names every block it sent.
	oldLast, ok := lastProduced(leader.Logs())
	if !ok {
		t.Fatal("the first leader logged no \"Produced block\" line")
	}
	leader2 := startNode(t, "--leader", "--test-mode", "--db-path", ldb, "--rpc-addr", addr)
	if after := leader2.Health().P2PAddrs; slices.Equal(after, before) {
		t.Fatalf("the restarted leader listens on %v again: the test needs a new port", after)
	}
	waitGossipAbove(t, peer, oldLast, rejoinTimeout)
	target := leader2.WaitHeight(heightOf(t, leader2)+1, syncTimeout)
	peer.WaitHeight(target, syncTimeout)
	checkChain(t, sameBlocks(t, leader2, peer, 0, target))
}

// TestPeerBlockWithMessagesOnDemand: GET /block/{h}?messages=true on a peer
// gives every message of the block in block order with a proof against the
// peer's block; the peer keeps them and serves them after the leader is
// killed.
func TestPeerBlockWithMessagesOnDemand(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	leader := startNode(t, "--leader", "--test-mode")
	peer := startPeer(t, leader)
	msgs := signed(newSender(t), 1, 6, "block on demand")
	ids := submitAll(t, leader, msgs)
	byID := map[chain.Hash]*chain.Message{}
	var heights []uint64
	var most int
	for i, id := range ids {
		byID[id] = &msgs[i]
		lm := waitConfirmed(t, leader, id, syncTimeout)
		if !slices.Contains(heights, *lm.BlockHeight) {
			heights = append(heights, *lm.BlockHeight)
		}
	}
	peer.WaitHeight(slices.Max(heights), syncTimeout)

	served := map[uint64]api.Block{}
	for _, h := range heights {
		b, err := peer.Client().Block(ctx, h, true)
		if err != nil {
			t.Fatalf("peer: GET /block/%d?messages=true: %v", h, err)
		}
		plain := b
		plain.Messages = nil
		lb, err := leader.Client().Block(ctx, h, false)
		if err != nil || !reflect.DeepEqual(plain, lb) {
			t.Errorf("block %d: peer has %+v, leader %+v (%v)", h, plain, lb, err)
		}
		if len(b.Messages) != b.MessageCount {
			t.Fatalf("peer: block %d: %d messages for message_count %d", h, len(b.Messages), b.MessageCount)
		}
		most = max(most, len(b.Messages))
		for i := range b.Messages {
			m := &b.Messages[i]
			if m.ID != b.MessageIDs[i] {
				t.Errorf("peer: block %d: messages[%d] is %s, message_ids[%d] is %s", h, i, m.ID, i, b.MessageIDs[i])
			}
			if m.Status != api.StatusConfirmed || m.BlockHeight == nil || *m.BlockHeight != h || m.Index == nil || int(*m.Index) != i {
				t.Errorf("peer: block %d: messages[%d] says status %q, block_height %s, index %s", h, i, m.Status, optString(m.BlockHeight), optString(m.Index))
			}
			checkConfirmed(t, peer, m)
			if want, ok := byID[m.ID]; !ok {
				t.Errorf("peer: block %d: messages[%d] is %s, not one submitted", h, i, m.ID)
			} else if err := sameContent(m, want); err != nil {
				t.Errorf("peer: block %d: messages[%d]: %v", h, i, err)
			}
		}
		served[h] = b
	}
	if most < 2 {
		t.Fatalf("the %d messages of one POST /messages were sealed one per block (%v); this test needs a block with several", len(ids), heights)
	}

	leader.Kill()
	for _, h := range heights {
		b, err := peer.Client().Block(ctx, h, true)
		if err != nil {
			t.Errorf("peer, leader killed: GET /block/%d?messages=true: %v", h, err)
		} else if !reflect.DeepEqual(b, served[h]) {
			t.Errorf("peer, leader killed: block %d with messages is %+v, was %+v", h, b, served[h])
		}
		for i, want := range served[h].Messages {
			m, err := peer.Client().Message(ctx, want.ID)
			if err != nil {
				t.Errorf("peer, leader killed: GET /message/%s: %v", want.ID, err)
			} else if !reflect.DeepEqual(m, want) {
				t.Errorf("peer, leader killed: message %s is %+v, block %d's messages[%d] was %+v", want.ID, m, h, i, want)
			}
		}
	}
}

// TestPeerRefusesOtherLeader: a peer whose data came from leader A, pointed
// at another leader B (another data directory, so another key), exits 1
// naming the producer key, and stores nothing of B's chain.
func TestPeerRefusesOtherLeader(t *testing.T) {
	t.Parallel()
	a := startNode(t, "--leader", "--test-mode")
	b := startNode(t, "--leader", "--test-mode")
	pdb := t.TempDir()
	peer := startPeer(t, a, "--db-path", pdb)
	peer.WaitHeight(3, syncTimeout)
	stopGracefully(t, peer)

	code, stdout, stderr := runBinary(t, "verify", "--db-path", pdb)
	m := verifiedRE.FindStringSubmatch(stdout)
	if code != 0 || m == nil {
		t.Fatalf("verify of the peer's data: exit %d, %q / %q", code, stdout, stderr)
	}
	count, _ := strconv.ParseUint(m[1], 10, 64)
	aTip := count - 1
	aBlocks := blocksUpTo(t, a, 1, aTip)
	aKey := aBlocks[0].Producer

	// B is ahead of the peer's chain, so anything taken from it would show.
	b.WaitHeight(aTip+2, syncTimeout)
	bBlock, err := b.Client().Block(t.Context(), 1, false)
	if err != nil {
		t.Fatal(err)
	}
	bKey := bBlock.Producer
	if bytes.Equal(aKey, bKey) {
		t.Fatalf("leaders A and B both sign with %x", aKey)
	}

	refused := launchNode(t, "--leader-rpc", b.URL(), "--db-path", pdb)
	if code := refused.ExitCode(runTimeout); code != 1 {
		t.Fatalf("peer of A pointed at B: exit code %d, want 1", code)
	}
	logs := refused.Logs()
	if !regexp.MustCompile(`(?i)producer|genesis`).MatchString(logs) || !strings.Contains(logs, fmt.Sprintf("%x", bKey)) {
		t.Errorf("peer of A pointed at B: its output does not name the producer key (B's is %x):\n%s", bKey, logs)
	}

	code, stdout, stderr = runBinary(t, "verify", "--db-path", pdb)
	if want := fmt.Sprintf("Chain integrity verified: %d blocks", count); code != 0 || !strings.Contains(stdout, want) {
		t.Errorf("verify after the refusal: exit %d, %q / %q; want 0 and %q", code, stdout, stderr, want)
	}
	editChain(t, pdb, func(p *pebble.DB) error {
		last, err := getValue(p, []byte("meta:last_hash"))
		if err != nil {
			return err
		}
		if want := aBlocks[len(aBlocks)-1].Hash; !bytes.Equal(last, want[:]) {
			t.Errorf("peer's meta:last_hash %x, A's block %d is %s", last, aTip, want)
		}
		if _, err := getValue(p, blockKey(aTip+1)); err == nil {
			t.Errorf("peer's data holds a block %d above A's %d", aTip+1, aTip)
		}
		for _, ab := range aBlocks {
			rec, err := getValue(p, blockKey(ab.Height))
			if err != nil {
				return err
			}
			if !bytes.Contains(rec, ab.Signature) {
				t.Errorf("peer's block %d is not A's (signature %x not in its record)", ab.Height, ab.Signature)
			}
		}
		return nil
	})
}

// TestPeerRefusesPeerAsLeader: a new peer whose --leader-rpc names another
// peer exits 1 saying so, and pins nothing: pointed at the real leader
// afterwards, it follows it.
func TestPeerRefusesPeerAsLeader(t *testing.T) {
	t.Parallel()
	leader := startNode(t, "--leader", "--test-mode")
	first := startPeer(t, leader)
	pdb := t.TempDir()
	refused := launchNode(t, "--leader-rpc", first.URL(), "--db-path", pdb)
	if code := refused.ExitCode(runTimeout); code != 1 {
		t.Fatalf("peer pointed at a peer: exit code %d, want 1", code)
	}
	if logs := refused.Logs(); !strings.Contains(logs, `role "peer"`) {
		t.Errorf("peer pointed at a peer: its output does not say the node is a peer:\n%s", logs)
	}
	second := startPeer(t, leader, "--db-path", pdb)
	target := heightOf(t, leader)
	second.WaitHeight(target, syncTimeout)
	checkChain(t, sameBlocks(t, leader, second, 0, target))
}

// TestPeerPollsWhileLeaderAddrHangs: a leader p2p address that takes
// connections but never answers (a dial waits out libp2p's timeout of
// several seconds) holds up neither the first catch-up nor the polls
// after it: the peer keeps up with the leader by polling, every second.
//
// The peer's own log is the clock: it logs each failed dial, and each batch
// of blocks a catch-up stored, with a timestamp. Between the first contact
// and the first failed dial, and between that and the next failed dial (the
// retry a later poll starts), the catch-ups must go on for well over a
// second: a poll held up by the dial could store blocks at most once per
// dial.
func TestPeerPollsWhileLeaderAddrHangs(t *testing.T) {
	t.Parallel()
	const (
		// minSpan is how long the catch-ups within one hanging dial must
		// go on for: more than one poll interval (1s), well under a dial's
		// timeout (5s on a loopback address).
		minSpan = 1500 * time.Millisecond
		// dialsTimeout bounds the two hanging dials, a poll apart.
		dialsTimeout = 40 * time.Second
	)
	leader := startNode(t, "--leader", "--test-mode")
	tarpit, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: the kernel completes handshakes, nothing answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tarpit.Close() })
	port := tarpit.Addr().(*net.TCPAddr).Port
	peer := startPeer(t, leader, "--log-level", "debug",
		"--leader-addr", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, leader.Health().PeerID))

	var windows [][]time.Time // the catch-ups' times before each failed dial
	var failedAt []time.Time
	eventually(t, dialsTimeout, "two failed dials of the address that never answers", func() error {
		if peer.Exited() {
			t.Fatalf("%s exited (code %d)", peer, peer.exitCode)
		}
		windows, failedAt = catchUpsPerDial(t, peer.Logs())
		if len(failedAt) < 2 {
			return fmt.Errorf("%d failed dials logged", len(failedAt))
		}
		return nil
	})
	for i := range 2 {
		w := windows[i]
		var span time.Duration
		if len(w) > 0 {
			span = w[len(w)-1].Sub(w[0])
		}
		t.Logf("dial %d failed at %s: %d catch-ups before it, over %v", i+1, failedAt[i].Format("15:04:05.000"), len(w), span)
		if span < minSpan {
			t.Errorf("dial %d: the catch-ups while it hung went on for %v (%d of them), want at least %v: polling waited for the dial",
				i+1, span, len(w), minSpan)
		}
	}
	// And the peer is still level with the leader.
	target := leader.WaitHeight(heightOf(t, leader)+5, syncTimeout)
	peer.WaitHeight(target, syncTimeout)
	if strings.Contains(peer.Logs(), "Received block by gossip") {
		t.Error("the peer received gossip through an address that never answers")
	}
}

// catchUpsPerDial reads a peer's debug log: failedAt are the times of its
// "cannot connect to the leader over p2p" lines, and windows[i] the times of
// the "Stored blocks" lines of catch-ups logged after failed dial i-1 (or
// the start) and before failed dial i.
func catchUpsPerDial(t testing.TB, logs string) (windows [][]time.Time, failedAt []time.Time) {
	t.Helper()
	timeOf := func(line string) time.Time {
		v, ok := strings.CutPrefix(strings.Fields(line)[0], "time=")
		if !ok {
			t.Fatalf("log line without a leading time=: %q", line)
		}
		at, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		return at
	}
	var cur []time.Time
	for line := range strings.Lines(logs) {
		switch {
		case !strings.HasSuffix(line, "\n"): // still being written
		case strings.Contains(line, `msg="Stored blocks"`) && strings.Contains(line, " via=catch-up"):
			cur = append(cur, timeOf(line))
		case strings.Contains(line, "cannot connect to the leader over p2p"):
			failedAt = append(failedAt, timeOf(line))
			windows = append(windows, cur)
			cur = nil
		}
	}
	return windows, failedAt
}

// TestPeerLeaderAddrFlag: a peer given --leader-addr dials that address, not
// the ones the leader reports, and follows the leader by gossip through it.
// The address is a TCP relay to the leader's libp2p port, which only the flag
// names.
func TestPeerLeaderAddrFlag(t *testing.T) {
	t.Parallel()
	leader := startNode(t, "--leader", "--test-mode")
	lh := leader.Health()
	target := ""
	for _, a := range lh.P2PAddrs {
		if p, ok := strings.CutPrefix(a, "/ip4/127.0.0.1/tcp/"); ok && strings.HasSuffix(p, "/p2p/"+lh.PeerID) {
			target = "127.0.0.1:" + strings.TrimSuffix(p, "/p2p/"+lh.PeerID)
			break
		}
	}
	if target == "" {
		t.Fatalf("leader /health: no /ip4/127.0.0.1/tcp/PORT/p2p/%s address: %v", lh.PeerID, lh.P2PAddrs)
	}
	relay, dialled := tcpRelay(t, target)
	_, port, _ := net.SplitHostPort(relay)
	peer := startPeer(t, leader, "--leader-addr", "/ip4/127.0.0.1/tcp/"+port+"/p2p/"+lh.PeerID, "--log-level", "debug")
	peer.WaitLog("Received block by gossip", syncTimeout)
	if dialled.Load() == 0 {
		t.Fatal("the peer got gossip without dialling --leader-addr")
	}
	tip := max(heightOf(t, leader), 3)
	peer.WaitHeight(tip, syncTimeout)
	checkChain(t, sameBlocks(t, leader, peer, 0, tip))
}

// tcpRelay listens on 127.0.0.1 and copies each connection to and from
// target until the test ends. It returns its address and a count of the
// connections it took.
func tcpRelay(t *testing.T, target string) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		dialled atomic.Int32
		mu      sync.Mutex
		conns   []net.Conn
		wg      sync.WaitGroup
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			dialled.Add(1)
			track(in)
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			track(out)
			for _, pair := range [][2]net.Conn{{in, out}, {out, in}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = io.Copy(pair[0], pair[1])
					_ = pair[0].Close()
				}()
			}
		}
	}()
	return ln.Addr().String(), &dialled
}

// TestPeerRefusesLeaderAddrOfAnotherNode: --leader-addr with a peer ID that
// is not the one the leader at --leader-rpc reports is refused at startup
// (exit 1, both IDs named) rather than dialled, and no producer is pinned:
// the same data directory then follows the leader.
func TestPeerRefusesLeaderAddrOfAnotherNode(t *testing.T) {
	t.Parallel()
	leader := startNode(t, "--leader", "--test-mode")
	other := startNode(t, "--leader", "--test-mode")
	oh := other.Health()
	if len(oh.P2PAddrs) == 0 {
		t.Fatalf("%s reports no p2p address", other)
	}
	wrong := oh.P2PAddrs[0]
	pdb := t.TempDir()
	refused := launchNode(t, "--leader-rpc", leader.URL(), "--leader-addr", wrong, "--db-path", pdb)
	if code := refused.ExitCode(runTimeout); code != 1 {
		t.Fatalf("peer with another node's --leader-addr: exit code %d, want 1\n%s", code, refused.Logs())
	}
	logs := refused.Logs()
	if !strings.Contains(logs, oh.PeerID) || !strings.Contains(logs, leader.Health().PeerID) {
		t.Errorf("refusal does not name both peer IDs (given %s, leader %s):\n%s", oh.PeerID, leader.Health().PeerID, logs)
	}
	peer := startPeer(t, leader, "--db-path", refused.DBPath())
	peer.WaitHeight(max(heightOf(t, leader), 2), syncTimeout)
}
