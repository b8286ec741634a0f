package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/mempool"
)

// TestLeaderProducesBlocks: a leader in test mode seals a block every 100ms,
// empty ones too; the blocks link, their timestamps never go back, and each
// is signed by the leader's node key, whose libp2p peer ID /health reports.
func TestLeaderProducesBlocks(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	start := time.Now()
	n := startNode(t, "--leader", "--test-mode")
	n.WaitHeight(5, 5*time.Second)

	h, err := n.Client().Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != "ok" || h.Role != "leader" || h.GenesisHash != chain.GenesisHash {
		t.Errorf("/health: status %q, role %q, genesis_hash %s; want ok, leader, %s", h.Status, h.Role, h.GenesisHash, chain.GenesisHash)
	}

	if len(h.P2PAddrs) == 0 {
		t.Errorf("/health: no p2p_addrs")
	}
	for _, a := range h.P2PAddrs {
		if !strings.HasPrefix(a, "/ip4/127.0.0.1/") {
			t.Errorf("/health: p2p address %s; the node was told to listen on 127.0.0.1 only", a)
		}
	}

	blocks := blocksUpTo(t, n, 0, 5)
	checkChain(t, blocks)
	for _, b := range blocks[1:] {
		if got := peerIDOf(b.Producer); got != h.PeerID {
			t.Errorf("block %d: producer %x has peer ID %s, /health says the leader is %s", b.Height, b.Producer, got, h.PeerID)
		}
		if b.MessageCount != 0 {
			t.Errorf("block %d holds %d messages; none were submitted", b.Height, b.MessageCount)
		}
		now := uint64(time.Now().UnixMilli())
		if b.Timestamp < uint64(start.UnixMilli())-1000 || b.Timestamp > now+1000 {
			t.Errorf("block %d: timestamp %d is not a Unix millisecond time of this run (%d..%d)", b.Height, b.Timestamp, start.UnixMilli(), now)
		}
		n.WaitLog(fmt.Sprintf("Produced block %d with 0 messages", b.Height), 2*time.Second)
	}
	// Test mode is a 100ms interval: four intervals take about 400ms.
	if span := time.Duration(blocks[5].Timestamp-blocks[1].Timestamp) * time.Millisecond; span < 200*time.Millisecond || span > 4*time.Second {
		t.Errorf("blocks 1 to 5 span %v; test mode seals every 100ms", span)
	}
}

// TestMessageInclusion: submitted messages are acknowledged with their ID,
// sealed, and served with an inclusion proof that verifies against their
// block's message_root; duplicates, bad signatures and oversized content are
// refused with 409, 400 and 413.
func TestMessageInclusion(t *testing.T) {
	t.Parallel()
	t.Run("confirmed", testMessagesConfirmed)
	t.Run("pending", testMessagePending)
}

func testMessagesConfirmed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const limit = 1024
	n := startNode(t, "--leader", "--test-mode", "--max-message-bytes", strconv.Itoa(limit))
	c := n.Client()

	sent := map[chain.Hash]chain.Message{}
	submit := func(m chain.Message) {
		t.Helper()
		a, err := c.Submit(ctx, &m)
		if err != nil {
			t.Fatalf("submit nonce %d: %v", m.Nonce, err)
		}
		if a.ID != m.ID() || a.Status != api.StatusPending {
			t.Fatalf("submit nonce %d: answer %+v, want id %s, status pending", m.Nonce, a, m.ID())
		}
		sent[a.ID] = m
	}

	alice := newSender(t)
	submit(chain.SignMessage(alice, 1, "hello"))
	submit(chain.SignMessage(alice, 2, "héllo, wörld ✓"))
	submit(chain.SignMessage(alice, 3, ""))
	submit(chain.SignMessage(alice, 4, strings.Repeat("x", limit))) // exactly the limit
	submit(chain.SignMessage(newSender(t), 1, "same nonce, other sender"))

	// A batch: each judged on its own, in request order.
	bob := newSender(t)
	okMsg := chain.SignMessage(bob, 10, "batch ok")
	badSig := chain.SignMessage(bob, 11, "batch bad signature")
	badSig.Signature[0] ^= 1
	tooBig := chain.SignMessage(bob, 12, strings.Repeat("y", limit+1))
	dup := chain.SignMessage(alice, 1, "batch duplicate")
	results, err := c.SubmitBatch(ctx, []chain.Message{okMsg, badSig, tooBig, dup})
	if err != nil {
		t.Fatalf("POST /messages: %v", err)
	}
	wantCodes := []int{0, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusConflict}
	if len(results) != len(wantCodes) {
		t.Fatalf("POST /messages: %d results for 4 messages: %+v", len(results), results)
	}
	for i, r := range results {
		if r.Code != wantCodes[i] {
			t.Errorf("POST /messages result %d: %+v, want code %d", i, r, wantCodes[i])
		}
	}
	if r := results[0]; r.ID == nil || *r.ID != okMsg.ID() || r.Status != api.StatusPending {
		t.Errorf("POST /messages result 0: %+v, want id %s pending", r, okMsg.ID())
	} else {
		sent[okMsg.ID()] = okMsg
	}

	// One through the command-line tools.
	keyFile := filepath.Join(t.TempDir(), "sender.key")
	if code, _, stderr := runBinary(t, "keygen", "--key", keyFile); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	if fi, err := os.Stat(keyFile); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("keygen wrote %s with mode %v, want 0600", keyFile, fi.Mode().Perm())
	}
	code, stdout, stderr := runBinary(t, "submit", "--key", keyFile, "--content", "from the tool", "--nonce", "42", "--rpc", n.URL())
	if code != 0 {
		t.Fatalf("submit: exit %d: %s", code, stderr)
	}
	if !regexp.MustCompile(`(?m)^[0-9a-f]{64}$`).MatchString(stdout) {
		t.Fatalf("submit printed %q, want the message ID (64 hex) on a line of its own", stdout)
	}
	toolID, err := chain.ParseHash(strings.TrimSpace(stdout))
	if err != nil {
		t.Fatal(err)
	}

	// Every acknowledged message gets confirmed, with a proof.
	byBlock := map[uint64]bool{}
	for id, m := range sent {
		got := waitConfirmed(t, n, id, 5*time.Second)
		checkConfirmed(t, n, &got)
		if string(got.Sender) != string(m.Sender[:]) || got.Nonce != m.Nonce || got.Content != m.Content || string(got.Signature) != string(m.Signature[:]) {
			t.Errorf("message %s: served %+v, submitted %+v", id, got, m)
		}
		byBlock[*got.BlockHeight] = true
	}
	tm := waitConfirmed(t, n, toolID, 5*time.Second)
	checkConfirmed(t, n, &tm)
	if tm.Nonce != 42 || tm.Content != "from the tool" {
		t.Errorf("message submitted by the tool: nonce %d, content %q; want 42, %q", tm.Nonce, tm.Content, "from the tool")
	}
	byBlock[*tm.BlockHeight] = true

	// GET /block/{h}?messages=true gives them in block order.
	for h := range byBlock {
		b, err := c.Block(ctx, h, true)
		if err != nil {
			t.Fatalf("GET /block/%d?messages=true: %v", h, err)
		}
		if len(b.Messages) != b.MessageCount {
			t.Fatalf("block %d: %d messages for message_count %d", h, len(b.Messages), b.MessageCount)
		}
		for i := range b.Messages {
			m := &b.Messages[i]
			if m.ID != b.MessageIDs[i] {
				t.Errorf("block %d: messages[%d] is %s, message_ids[%d] is %s", h, i, m.ID, i, b.MessageIDs[i])
			}
			if m.Status != api.StatusConfirmed || m.BlockHeight == nil || *m.BlockHeight != h || m.Index == nil || int(*m.Index) != i {
				t.Errorf("block %d: messages[%d] says status %q, block_height %s, index %s", h, i, m.Status, optString(m.BlockHeight), optString(m.Index))
			}
			checkConfirmed(t, n, m)
		}
	}

	// The query tool shows the same message.
	code, stdout, stderr = runBinary(t, "query", "message", "--id", toolID.String(), "--rpc", n.URL())
	if code != 0 {
		t.Fatalf("query message: exit %d: %s", code, stderr)
	}
	var qm api.Message
	if err := json.Unmarshal([]byte(stdout), &qm); err != nil || qm.ID != toolID || qm.Status != api.StatusConfirmed {
		t.Errorf("query message printed %q (%v), want confirmed message %s", stdout, err, toolID)
	}

	// Refusals.
	refused := func(what string, m chain.Message, code int) {
		t.Helper()
		_, err := c.Submit(ctx, &m)
		if httpCode(err) != code {
			t.Errorf("%s: got %v, want HTTP %d", what, err, code)
		}
	}
	refused("duplicate of a confirmed message (other content)", chain.SignMessage(alice, 2, "again"), http.StatusConflict)
	_, err = c.Submit(ctx, ptr(chain.SignMessage(alice, 1, "hello")))
	var he *api.HTTPError
	if !errors.As(err, &he) || he.Code != http.StatusConflict {
		t.Errorf("exact resubmission of a confirmed message: got %v, want HTTP 409", err)
	} else if want := chain.MessageID(pubOf(alice), 1); he.ID == nil || *he.ID != want {
		t.Errorf("409 body: id %v, want %s", he.ID, want)
	}
	wrongKey := chain.SignMessage(newSender(t), 5, "signed by someone else")
	wrongKey.Sender = pubOf(alice)
	refused("signature by another key", wrongKey, http.StatusBadRequest)
	flipped := chain.SignMessage(alice, 6, "flipped")
	flipped.Signature[63] ^= 0x80
	refused("flipped signature bit", flipped, http.StatusBadRequest)
	tampered := chain.SignMessage(alice, 7, "original")
	tampered.Content = "tampered"
	refused("content changed after signing", tampered, http.StatusBadRequest)
	refused("content over --max-message-bytes", chain.SignMessage(alice, 8, strings.Repeat("z", limit+1)), http.StatusRequestEntityTooLarge)
	for _, nonce := range []uint64{6, 7, 8} {
		if _, err := c.Message(ctx, chain.MessageID(pubOf(alice), nonce)); httpCode(err) != http.StatusNotFound {
			t.Errorf("refused message nonce %d: GET /message: %v, want 404", nonce, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// pubOf is the sender public key of priv.
func pubOf(priv ed25519.PrivateKey) chain.PublicKey {
	return chain.PublicKey(priv.Public().(ed25519.PublicKey))
}

// testMessagePending: with a 3s interval, a message submitted just after a
// block is visibly pending (no place, no proof) until the next block seals
// it, and a duplicate of a pending message is already refused.
func testMessagePending(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	// The checks below take a few requests; the interval leaves them ample
	// room on a loaded machine before the next block seals the message.
	const interval = 3 * time.Second
	n := startNode(t, "--leader", "--block-interval", interval.String())
	c := n.Client()
	// Submit right after a block, so that the next is about 3s away.
	sealed := n.WaitHeight(1, interval+5*time.Second)

	sender := newSender(t)
	m := chain.SignMessage(sender, 7, "waiting for a block")
	a, err := c.Submit(ctx, &m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Message(ctx, a.ID)
	if err != nil {
		t.Fatalf("GET /message/%s: %v", a.ID, err)
	}
	if got.Status != api.StatusPending || got.BlockHeight != nil || got.Index != nil || got.Proof != nil {
		t.Errorf("just submitted: status %q, block_height %s, index %s, proof %v; want pending without them",
			got.Status, optString(got.BlockHeight), optString(got.Index), got.Proof)
	}
	checkMessage(t, &got)
	if got.Timestamp == 0 {
		t.Errorf("pending message has no timestamp; the leader stamps it on acceptance")
	}
	if h, err := c.Health(ctx); err != nil || h.Pending < 1 {
		t.Errorf("/health while a message is pending: %+v, %v; want pending >= 1", h, err)
	}
	if _, err := c.Submit(ctx, ptr(chain.SignMessage(sender, 7, "other content, same nonce"))); httpCode(err) != http.StatusConflict {
		t.Errorf("duplicate of a pending message: %v, want HTTP 409", err)
	}
	if ht, err := c.Height(ctx); err != nil || ht.Height != sealed {
		t.Fatalf("height %d (%v) after the checks, was %d: the checks took too long to show the pending state", ht.Height, err, sealed)
	}

	conf := waitConfirmed(t, n, a.ID, interval+5*time.Second)
	checkConfirmed(t, n, &conf)
	checkProofField(t, n, a.ID) // the only message of its block: an empty proof
	if *conf.BlockHeight <= sealed {
		t.Errorf("confirmed in block %d, submitted after block %d", *conf.BlockHeight, sealed)
	}
	if conf.Timestamp != got.Timestamp {
		t.Errorf("timestamp %d when pending, %d when confirmed", got.Timestamp, conf.Timestamp)
	}
	n.WaitLog(fmt.Sprintf("Produced block %d with 1 messages", *conf.BlockHeight), 2*time.Second)
}

// TestChainContinuity: every block from 0 to the tip, read with GET /blocks
// and with GET /block/{h}, is the same and links to the one before; /latest
// is /block/{tip} and /height names it.
func TestChainContinuity(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	n := startNode(t, "--leader", "--test-mode")
	c := n.Client()
	sender := newSender(t)
	var ids []chain.Hash
	for i := range 5 {
		a, err := c.Submit(ctx, ptr(chain.SignMessage(sender, uint64(i), fmt.Sprintf("message %d", i))))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	for _, id := range ids { // so that all five are below the tip taken below
		waitConfirmed(t, n, id, 5*time.Second)
	}
	n.WaitHeight(10, 5*time.Second)

	// The tip moves every 100ms: take /latest and /height until they agree.
	var latest api.Block
	eventually(t, 5*time.Second, "/latest and /height at the same tip", func() error {
		var err error
		if latest, err = c.Latest(ctx); err != nil {
			return err
		}
		ht, err := c.Height(ctx)
		if err != nil {
			return err
		}
		if ht.Height != latest.Height {
			return fmt.Errorf("/latest at %d, /height at %d", latest.Height, ht.Height)
		}
		if ht.Hash != latest.Hash {
			t.Fatalf("/height and /latest at %d: hash %s and %s", ht.Height, ht.Hash, latest.Hash)
		}
		return nil
	})
	tip := latest.Height
	if b, err := c.Block(ctx, tip, false); err != nil || !reflect.DeepEqual(b, latest) {
		t.Errorf("/block/%d is %+v (%v), /latest was %+v", tip, b, err, latest)
	}

	viaRange := blocksJSON(t, n, 0, int(tip)+1)
	if uint64(len(viaRange)) != tip+1 {
		t.Fatalf("GET /blocks?from=0&limit=%d gave %d blocks", tip+1, len(viaRange))
	}
	viaOne := blocksUpTo(t, n, 0, tip)
	for h := range viaRange {
		if !reflect.DeepEqual(viaRange[h], viaOne[h]) {
			t.Errorf("height %d: /blocks gives %+v, /block gives %+v", h, viaRange[h], viaOne[h])
		}
	}
	checkChain(t, viaRange)
	if viaRange[tip].Hash != latest.Hash {
		t.Errorf("block %d from /blocks has hash %s, /latest %s", tip, viaRange[tip].Hash, latest.Hash)
	}
	var msgs int
	for _, b := range viaRange {
		msgs += b.MessageCount
	}
	if msgs != len(ids) {
		t.Errorf("%d messages in blocks 0..%d, %d submitted and confirmed before", msgs, tip, len(ids))
	}

	// A page from the middle.
	page := blocksJSON(t, n, 3, 4)
	if len(page) != 4 {
		t.Fatalf("GET /blocks?from=3&limit=4 gave %d blocks", len(page))
	}
	for i := range page {
		if !reflect.DeepEqual(page[i], viaOne[3+i]) {
			t.Errorf("GET /blocks?from=3&limit=4: block %d is %+v, want %+v", i, page[i], viaOne[3+i])
		}
	}

	if h, err := c.Health(ctx); err != nil || h.Height < tip || h.GenesisHash != viaRange[0].Hash {
		t.Errorf("/health %+v (%v): want height >= %d and genesis_hash %s", h, err, tip, viaRange[0].Hash)
	}

	// The query tool reads the same chain.
	query := func(args ...string) string {
		t.Helper()
		code, stdout, stderr := runBinary(t, append(append([]string{"query"}, args...), "--rpc", n.URL())...)
		if code != 0 {
			t.Fatalf("query %v: exit %d: %s", args, code, stderr)
		}
		return stdout
	}
	if out := strings.TrimSpace(query("height")); !regexp.MustCompile(`^[0-9]+$`).MatchString(out) {
		t.Errorf("query height printed %q, want a number alone", out)
	} else if h, _ := strconv.ParseUint(out, 10, 64); h < tip {
		t.Errorf("query height printed %d, below %d", h, tip)
	}
	if out := strings.TrimSpace(query("hash")); !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(out) {
		t.Errorf("query hash printed %q, want 64 hex alone", out)
	}
	var qb api.Block
	if out := query("block", "--height", "3"); json.Unmarshal([]byte(out), &qb) != nil || !reflect.DeepEqual(qb, viaOne[3]) {
		t.Errorf("query block --height 3 printed %q, want %+v", out, viaOne[3])
	}
	var ql api.Block
	if out := query("latest"); json.Unmarshal([]byte(out), &ql) != nil || ql.Height < tip {
		t.Errorf("query latest printed %q, want a block at or above %d", out, tip)
	} else {
		checkBlock(t, &ql)
	}
}

// TestConfirmationVisibleWithItsBlock: a message is reported confirmed only
// once its block is served: whoever sees "confirmed" at block_height H can
// read block H and sees /height at H or above. Clients poll a message and
// then fetch its block, so any window between the two shows up here.
func TestConfirmationVisibleWithItsBlock(t *testing.T) {
	t.Parallel()
	n := startNode(t, "--leader", "--test-mode")
	c := n.Client()
	const submitters = 3
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		problems []string
		checked  int
	)
	keys := make([]ed25519.PrivateKey, submitters)
	for i := range keys {
		keys[i] = newSender(t)
	}
	stop := time.Now().Add(2 * time.Second)
	for _, key := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for nonce := uint64(1); time.Now().Before(stop); nonce++ {
				m := chain.SignMessage(key, nonce, "watch me")
				if _, err := c.Submit(ctx, &m); err != nil {
					mu.Lock()
					problems = append(problems, fmt.Sprintf("submit: %v", err))
					mu.Unlock()
					return
				}
				deadline := time.Now().Add(5 * time.Second)
				problem := fmt.Sprintf("message %s not confirmed within 5s", m.ID())
				for time.Now().Before(deadline) {
					got, err := c.Message(ctx, m.ID())
					if err != nil {
						problem = fmt.Sprintf("GET /message/%s: %v", m.ID(), err)
						break
					}
					if got.Status != api.StatusConfirmed {
						time.Sleep(time.Millisecond) // poll fast: the window may be short
						continue
					}
					problem = ""
					h := *got.BlockHeight
					if _, err := c.Block(ctx, h, false); err != nil {
						problem = fmt.Sprintf("message %s confirmed at height %d, then GET /block/%d: %v", m.ID(), h, h, err)
					} else if ht, err := c.Height(ctx); err != nil || ht.Height < h {
						problem = fmt.Sprintf("message %s confirmed at height %d, then /height %d (%v)", m.ID(), h, ht.Height, err)
					}
					break
				}
				mu.Lock()
				checked++
				if problem != "" {
					problems = append(problems, problem)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, p := range problems {
		if i == 5 {
			t.Errorf("... %d such problems in all", len(problems))
			break
		}
		t.Error(p)
	}
	// Two seconds of 100 ms blocks: each submitter sees several confirmed.
	if checked < submitters*3 {
		t.Errorf("only %d messages watched to confirmation", checked)
	}
	t.Logf("%d messages watched, %d problems", checked, len(problems))
}

// TestFullPendingQueue: a leader whose pending queue has reached
// --max-pending-bytes answers 503 (directly and through a peer, which
// forwards it), holds no more than the bound, and takes submissions again
// once a block has taken the queue.
func TestFullPendingQueue(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const content = "a message of forty bytes, give or take.."
	room := 3 * (len(content) + mempool.MessageOverhead) // three messages
	n := startNode(t, "--leader", "--block-interval", "2s", "--max-message-bytes", "100", "--max-pending-bytes", strconv.Itoa(room))
	peer := startPeer(t, n)
	sender := newSender(t)
	nonce := uint64(0)
	submit := func(via *Node) error {
		nonce++
		_, err := via.Client().Submit(ctx, ptr(chain.SignMessage(sender, nonce, content)))
		return err
	}
	// fill submits through via, with raw requests so that the headers show,
	// until it is answered 503: within four submissions, unless a block is
	// sealed in between (every 2 s). The 503 must be the leader's for a full
	// queue, Retry-After and all, and not, say, a peer's for a leader it
	// cannot reach.
	fill := func(via *Node) {
		t.Helper()
		for range 12 {
			nonce++
			m := chain.SignMessage(sender, nonce, content)
			r := via.request(http.MethodPost, "/message", "application/json", submissionBody(t, &m))
			switch r.Code {
			case http.StatusAccepted:
				continue
			case http.StatusServiceUnavailable:
			default:
				t.Fatalf("submitting through %s: %d %s", via, r.Code, r.Body)
			}
			what := fmt.Sprintf("POST /message through %s to a full queue", via)
			errorAnswer(t, what, r, http.StatusServiceUnavailable)
			var eb struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(r.Body, &eb) // errorAnswer judged the body
			if reason := strings.ToLower(eb.Error); !strings.Contains(reason, "queue") || !strings.Contains(reason, "full") {
				t.Errorf("%s: reason %q does not say the pending queue is full", what, eb.Error)
			}
			if got := r.Header.Get("Retry-After"); got != "1" {
				t.Errorf("%s: Retry-After %q, want 1", what, got)
			}
			return
		}
		t.Fatalf("no 503 through %s after 12 submissions to a queue bounded to 3 messages", via)
	}
	fill(n)
	if h := n.Health(); h.Pending > 3 {
		t.Fatalf("/health pending %d, the bound holds 3", h.Pending)
	}
	fill(peer) // the peer forwards the leader's answer
	eventually(t, 10*time.Second, "a submission accepted after a block", func() error { return submit(n) })
}
