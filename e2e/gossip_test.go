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
// gossipsub's default 1 MiB message limit still reaches a peer over gossip,
// not only by catch-up: every node raises the limit, and the burst of
// submissions does not overflow a queue. 20,000 messages (64 bytes of entry
// each, 1.2 MiB) are submitted right after a block is sealed; the largest
// block they land in must be over 1 MiB (16,382 messages or more) and is the
// one judged.
func TestLargeBlockReachesPeerByGossip(t *testing.T) {
	t.Parallel()
	const (
		n, batch = 20000, 1000
		// recordSize is the size of a block record of m messages: header,
		// signature and count, then a 64-byte entry per message.
		recordBase, entrySize = 180, 64
		gossipsubDefaultLimit = 1 << 20
	)
	recordSize := func(m int) int { return recordBase + entrySize*m }
	// All n should arrive within one block interval, so that one block takes
	// them all; a loaded machine accepts them in a second or two, a
	// race-detector binary takes several seconds. Should they straddle a
	// seal after all, the largest part is judged, and must still be over
	// the limit.
	interval := 6 * time.Second
	if raceBuild {
		interval = 15 * time.Second
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
	// Right after a block is sealed, all n fit in the next interval. Every
	// block after that one holds only messages of this test.
	h, err := leader.Client().Height(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	before := h.Height + 1
	leader.WaitLog(fmt.Sprintf("Produced block %d with", before), interval+10*time.Second)
	submitStart := time.Now()
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
			if len(out.Results) != batch {
				errs <- fmt.Errorf("POST /messages: %d results for %d messages", len(out.Results), batch)
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
	accepted := time.Since(submitStart)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d messages accepted in %v (block interval %v)", n, accepted.Round(time.Millisecond), interval)

	// The blocks after the marker take all n; the largest is judged.
	produced := regexp.MustCompile(`Produced block (\d+) with (\d+) messages`)
	var (
		height uint64 // of the largest block
		most   int    // its message count
		parts  []string
	)
	eventually(t, 2*interval+10*time.Second, fmt.Sprintf("blocks after %d with %d messages in all", before, n), func() error {
		height, most, parts = 0, 0, nil
		total := 0
		for _, m := range produced.FindAllStringSubmatch(leader.Logs(), -1) {
			bh, _ := strconv.ParseUint(m[1], 10, 64)
			count, _ := strconv.Atoi(m[2])
			if bh <= before || count == 0 {
				continue
			}
			total += count
			parts = append(parts, fmt.Sprintf("block %d: %d", bh, count))
			if count > most {
				height, most = bh, count
			}
		}
		if total < n {
			return fmt.Errorf("%d sealed (%v)", total, parts)
		}
		if total > n {
			t.Fatalf("blocks after %d hold %d messages, only %d were submitted (%v)", before, total, n, parts)
		}
		return nil
	})
	if len(parts) > 1 {
		t.Logf("the messages straddled a seal: %v", parts)
	}
	size := recordSize(most)
	if size <= gossipsubDefaultLimit {
		t.Fatalf("the largest block, %d, has %d messages, a record of %d bytes, not over gossipsub's default %d: "+
			"accepting %d messages took %v of the %v interval and they were split (%v)",
			height, most, size, gossipsubDefaultLimit, n, accepted.Round(time.Millisecond), interval, parts)
	}
	// The peer logs every block gossip brings, before deciding whether it
	// still needs it; a catch-up by polling cannot produce this line.
	want := fmt.Sprintf(`msg="Received block by gossip" height=%d bytes=%d messages=%d`, height, size, most)
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
	if lb.MessageCount != most || pb.Hash != lb.Hash || pb.MessageCount != most {
		t.Fatalf("block %d: the peer's has hash %s and %d messages; the leader's %s and %d, its log said %d",
			height, pb.Hash, pb.MessageCount, lb.Hash, lb.MessageCount, most)
	}
}
