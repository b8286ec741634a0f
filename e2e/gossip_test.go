package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
)

// TestLargeBlockReachesPeerByGossip: a block whose record is well over
// gossipsub's default 1 MiB message limit (20,000 messages × 64 bytes of
// entries) still reaches a peer over gossip, not only by catch-up: every node
// raises the limit, and the burst of submissions does not overflow a queue.
func TestLargeBlockReachesPeerByGossip(t *testing.T) {
	t.Parallel()
	const n, batch = 20000, 1000
	// All n must arrive within one block interval; a race-detector binary
	// takes several seconds to accept them.
	interval := 2 * time.Second
	if raceBuild {
		interval = 10 * time.Second
	}
	leader := startNode(t, "--leader", "--block-interval", interval.String(), "--max-block-messages", strconv.Itoa(n))
	peer := startNode(t, "--leader-rpc", leader.URL(), "--log-level", "debug")

	// Sign and encode before the clock matters.
	key := newSender(t)
	bodies := make([][]byte, n/batch)
	var signing sync.WaitGroup
	for i := range bodies {
		signing.Add(1)
		go func() {
			defer signing.Done()
			var req struct {
				Messages []api.Submission `json:"messages"`
			}
			for j := range batch {
				m := chain.SignMessage(key, uint64(i*batch+j), fmt.Sprintf("message %d", i*batch+j))
				req.Messages = append(req.Messages, api.NewSubmission(&m))
			}
			bodies[i], _ = json.Marshal(req) // plain strings and numbers: cannot fail
		}()
	}
	signing.Wait()
	// Right after a block is sealed, all n fit in the next interval.
	h, err := leader.Client().Height(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	leader.WaitLog(fmt.Sprintf("Produced block %d with", h.Height+1), interval+10*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, len(bodies))
	for _, body := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(leader.URL()+"/messages", "application/json", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var out struct{ Results []api.Result }
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("POST /messages: %d, %v", resp.StatusCode, err)
				return
			}
			for _, r := range out.Results {
				if r.Error != "" {
					errs <- fmt.Errorf("message refused: %s", r.Error)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	line := leader.WaitLog(fmt.Sprintf("with %d messages", n), interval+10*time.Second)
	m := regexp.MustCompile(`Produced block (\d+) with`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no block of %d messages: %q", n, line)
	}
	height, _ := strconv.ParseUint(m[1], 10, 64)
	// The peer logs every block gossip brings, before deciding whether it
	// still needs it; a catch-up by polling cannot produce this line.
	want := fmt.Sprintf(`msg="Received block by gossip" height=%d bytes=%d messages=%d`, height, 180+64*n, n)
	peer.WaitLog(want, 10*time.Second)
	peer.WaitHeight(height, 10*time.Second)
	ctx := t.Context()
	lb, err := leader.Client().Block(ctx, height, false)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := peer.Client().Block(ctx, height, false)
	if err != nil {
		t.Fatal(err)
	}
	if pb.Hash != lb.Hash || pb.MessageCount != n {
		t.Fatalf("peer's block %d: hash %s with %d messages; leader's %s", height, pb.Hash, pb.MessageCount, lb.Hash)
	}
}
