package e2e

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
)

// logNumber waits for a log line matching re (one number group) and
// returns the number.
func logNumber(t testing.TB, n *Node, re *regexp.Regexp, timeout time.Duration) uint64 {
	t.Helper()
	var v uint64
	eventually(t, timeout, "a log line like "+re.String(), func() error {
		m := re.FindStringSubmatch(n.Logs())
		if m == nil {
			if n.Exited() {
				t.Fatalf("%s exited without logging %s", n, re)
			}
			return errors.New("not yet")
		}
		var err error
		v, err = strconv.ParseUint(m[1], 10, 64)
		return err
	})
	return v
}

var (
	resumingRE = regexp.MustCompile(`Leader resuming from height (\d+)`)
	verifiedRE = regexp.MustCompile(`Chain integrity verified: (\d+) blocks`)
	producedRE = regexp.MustCompile(`Produced block (\d+) with \d+ messages`)
)

// lastProduced is the height of the last "Produced block" line of a log.
func lastProduced(logs string) (uint64, bool) {
	all := producedRE.FindAllStringSubmatch(logs, -1)
	if len(all) == 0 {
		return 0, false
	}
	h, err := strconv.ParseUint(all[len(all)-1][1], 10, 64)
	return h, err == nil
}

// lastLine is the last non-empty line of a log.
func lastLine(logs string) string {
	lines := strings.Split(strings.TrimRight(logs, "\n"), "\n")
	return lines[len(lines)-1]
}

// stopGracefully stops n with SIGTERM and checks SPEC's graceful exit: code
// 0 within 5s and "Shutdown complete" as the last line.
func stopGracefully(t testing.TB, n *Node) {
	t.Helper()
	if code := n.Stop(); code != 0 {
		t.Fatalf("%s: exit code %d after SIGTERM, want 0", n, code)
	}
	if last := lastLine(n.Logs()); !strings.Contains(last, "Shutdown complete") {
		t.Errorf("%s: last log line %q, want \"Shutdown complete\"", n, last)
	}
}

// TestLeaderRestartContinuity: a leader stopped gracefully resumes from the
// height it had, with the same blocks and peer ID, and seals the messages
// that were still pending when it stopped.
func TestLeaderRestartContinuity(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := t.TempDir()

	// 1. Produce at least 10 blocks, one message among them, and stop.
	n1 := startNode(t, "--leader", "--test-mode", "--db-path", db)
	early := newSender(t)
	a, err := n1.Client().Submit(ctx, ptr(chain.SignMessage(early, 1, "confirmed before the restart")))
	if err != nil {
		t.Fatal(err)
	}
	waitConfirmed(t, n1, a.ID, 5*time.Second)
	n1.WaitHeight(10, 5*time.Second)
	h1, err := n1.Client().Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := blocksUpTo(t, n1, 0, 10)
	stopGracefully(t, n1)
	if fi, err := os.Stat(filepath.Join(db, "node.key")); err != nil {
		t.Errorf("node key: %v", err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s/node.key has mode %v, want 0600", db, fi.Mode().Perm())
	}
	last1, ok := lastProduced(n1.Logs())
	if !ok {
		t.Fatal("the first run logged no \"Produced block\" line")
	}

	// 2. Restart with a long interval: the chain is there at once; messages
	// submitted now stay pending through a graceful stop.
	n2 := startNode(t, "--leader", "--block-interval", "10s", "--db-path", db)
	resumed := logNumber(t, n2, resumingRE, time.Second)
	if resumed < 10 || resumed != last1 {
		t.Errorf("restart: \"Leader resuming from height %d\"; the first run's last block was %d", resumed, last1)
	}
	if v := logNumber(t, n2, verifiedRE, time.Second); v != resumed+1 {
		t.Errorf("restart: \"Chain integrity verified: %d blocks\", want %d", v, resumed+1)
	}
	h2, err := n2.Client().Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h2.Height != resumed || h2.PeerID != h1.PeerID {
		t.Errorf("restart: /health height %d, peer_id %s; want %d and the first run's %s", h2.Height, h2.PeerID, resumed, h1.PeerID)
	}
	if after := blocksUpTo(t, n2, 0, 10); !reflect.DeepEqual(after, before) {
		t.Errorf("blocks 0..10 changed across the restart:\nbefore %+v\nafter  %+v", before, after)
	}
	// Uniqueness holds across the restart (the leader's ID filter is
	// refilled by the startup scan).
	if _, err := n2.Client().Submit(ctx, ptr(chain.SignMessage(early, 1, "same nonce after the restart"))); httpCode(err) != http.StatusConflict {
		t.Errorf("restart: resubmitting (sender, nonce) confirmed before it: %v, want HTTP 409", err)
	}
	sender := newSender(t)
	var ids []chain.Hash
	for i := range 5 {
		a, err := n2.Client().Submit(ctx, ptr(chain.SignMessage(sender, uint64(i), fmt.Sprintf("pending at stop %d", i))))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, a.ID)
	}
	if h, err := n2.Client().Health(ctx); err != nil || h.Pending != len(ids) {
		t.Errorf("/health before the stop: %+v (%v), want pending %d", h, err, len(ids))
	}
	stopGracefully(t, n2)
	if _, produced := lastProduced(n2.Logs()); produced {
		t.Fatalf("the 10s-interval run sealed a block before it was stopped; this test needs it not to")
	}

	// 3. Restart in test mode: it resumes where it was, seals what was
	// pending and goes on.
	n3 := startNode(t, "--leader", "--test-mode", "--db-path", db)
	if r := logNumber(t, n3, resumingRE, time.Second); r != resumed {
		t.Errorf("second restart: \"Leader resuming from height %d\", want %d", r, resumed)
	}
	if v := logNumber(t, n3, verifiedRE, time.Second); v != resumed+1 {
		t.Errorf("second restart: \"Chain integrity verified: %d blocks\", want %d", v, resumed+1)
	}
	if ht, err := n3.Client().Height(ctx); err != nil || ht.Height < resumed {
		t.Errorf("second restart: /height %+v (%v), want at least %d at once", ht, err, resumed)
	}
	for _, id := range ids {
		m := waitConfirmed(t, n3, id, 5*time.Second)
		checkConfirmed(t, n3, &m)
		if *m.BlockHeight <= resumed {
			t.Errorf("message %s confirmed at %d, at or below the height %d it was pending at", id, *m.BlockHeight, resumed)
		}
	}
	tip := n3.WaitHeight(resumed+5, 5*time.Second)
	if tip < 15 {
		n3.WaitHeight(15, 5*time.Second)
	}
	all := allBlocks(t, n3, tip)
	checkChain(t, all)
	if got := peerIDOf(all[len(all)-1].Producer); got != h1.PeerID {
		t.Errorf("after two restarts blocks are produced by %s, the first run was %s", got, h1.PeerID)
	}
	stopGracefully(t, n3)
}

// TestCrashRecoveryNoDataLoss: a leader killed with SIGKILL while eight
// clients submit, three times over on the same data directory, loses no
// acknowledged message and never seals a message twice, and each restart
// still has every block the killed run logged as produced, the last of them
// with the hash it was served with before the kill.
func TestCrashRecoveryNoDataLoss(t *testing.T) {
	t.Parallel()
	const (
		rounds     = 3
		submitters = 8
	)
	db := t.TempDir()
	testStart := time.Now()

	type ack struct {
		msg   chain.Message
		round int
	}
	var (
		mu    sync.Mutex
		acked = map[chain.Hash]ack{}
	)
	// crashed is what each killed run had produced: the last block it had
	// logged as produced when it was read before the kill (and its hash as
	// served then), and the last one its final log names (a block may be
	// sealed between that read and the kill).
	type crash struct {
		round  int
		height uint64 // last "Produced block" before the kill was sent
		hash   chain.Hash
		logged uint64 // last "Produced block" of the run's whole log
	}
	var crashed []crash
	// survived checks, on a node restarted on db, that every block a killed
	// run logged as produced is there: it resumes at or above the last one,
	// and the block read before each kill has the same hash now.
	survived := func(n *Node, when string) {
		t.Helper()
		if len(crashed) == 0 {
			return
		}
		resumed := logNumber(t, n, resumingRE, time.Second)
		if last := crashed[len(crashed)-1]; resumed < last.logged {
			t.Errorf("%s: \"Leader resuming from height %d\", but round %d logged \"Produced block %d\" before it was killed",
				when, resumed, last.round, last.logged)
		}
		for _, c := range crashed {
			b, err := n.Client().Block(context.Background(), c.height, false)
			if err != nil {
				t.Errorf("%s: block %d, produced before round %d's kill: GET /block/%d: %v", when, c.height, c.round, c.height, err)
				continue
			}
			if b.Hash != c.hash {
				t.Errorf("%s: block %d has hash %s; before round %d's kill it was %s", when, c.height, b.Hash, c.round, c.hash)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	for round := 1; round <= rounds; round++ {
		n := startNode(t, "--leader", "--test-mode", "--db-path", db)
		t.Logf("round %d: node ready at %v", round, time.Since(testStart).Round(time.Millisecond))
		survived(n, fmt.Sprintf("round %d start", round))
		keys := make([]ed25519.PrivateKey, submitters)
		for i := range keys {
			keys[i] = newSender(t)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var (
			wg       sync.WaitGroup
			acks     atomic.Int64
			killed   atomic.Bool
			errMu    sync.Mutex
			liveErrs []error // errors while the node was alive
		)
		for w, key := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := api.NewClient(n.URL())
				for nonce := uint64(1); ctx.Err() == nil; nonce++ {
					m := chain.SignMessage(key, nonce, fmt.Sprintf("round %d submitter %d message %d", round, w, nonce))
					a, err := c.Submit(ctx, &m)
					if err != nil {
						if killed.Load() {
							return
						}
						errMu.Lock()
						liveErrs = append(liveErrs, fmt.Errorf("submitter %d nonce %d: %w", w, nonce, err))
						errMu.Unlock()
						continue
					}
					if a.ID != m.ID() {
						errMu.Lock()
						liveErrs = append(liveErrs, fmt.Errorf("submitter %d nonce %d: acknowledged as %s, ID is %s", w, nonce, a.ID, m.ID()))
						errMu.Unlock()
					}
					mu.Lock()
					acked[m.ID()] = ack{msg: m, round: round}
					mu.Unlock()
					acks.Add(1)
				}
			}()
		}
		// Should the test stop early, the submitters stop with it.
		t.Cleanup(func() {
			killed.Store(true)
			cancel()
			wg.Wait()
		})
		// Kill at a random moment around 300ms into the load, once there is load.
		loadFor := time.Duration(250+rand.IntN(100)) * time.Millisecond
		loadStart := time.Now()
		eventually(t, 10*time.Second, "submitters under way", func() error {
			if since := time.Since(loadStart); since < loadFor {
				return fmt.Errorf("only %v of load", since)
			}
			if a := acks.Load(); a < 2*submitters {
				return fmt.Errorf("only %d acknowledgements", a)
			}
			return nil
		})
		// The last block this run has logged as produced, and its hash:
		// it must outlive the kill unchanged.
		last, ok := lastProduced(n.Logs())
		if !ok {
			t.Fatalf("round %d: no \"Produced block\" line before the kill; test mode seals every 100ms", round)
		}
		lb, err := n.Client().Block(context.Background(), last, false)
		if err != nil {
			t.Fatalf("round %d: GET /block/%d, logged as produced: %v", round, last, err)
		}
		killed.Store(true)
		n.Kill()
		cancel()
		wg.Wait()
		logged, _ := lastProduced(n.Logs()) // final: the process is gone
		crashed = append(crashed, crash{round: round, height: last, hash: lb.Hash, logged: logged})
		for _, err := range liveErrs {
			t.Errorf("round %d: %v", round, err)
		}
		t.Logf("round %d: killed after %v of load with %d acknowledged messages and block %d (%d read before the kill); submitters done at %v",
			round, time.Since(loadStart).Round(time.Millisecond), acks.Load(), logged, last, time.Since(testStart).Round(time.Millisecond))
		if t.Failed() {
			t.FailNow()
		}
	}

	n := startNode(t, "--leader", "--test-mode", "--db-path", db)
	c := n.Client()
	t.Logf("final start: ready at %v", time.Since(testStart).Round(time.Millisecond))
	survived(n, "final start")

	// Each acknowledged message is there, unchanged. In test mode whatever
	// was pending is sealed within moments, so once the queue is empty each
	// must be confirmed (which is stronger than "pending or confirmed").
	eventually(t, 5*time.Second, "the pending queue to empty", func() error {
		h, err := c.Health(context.Background())
		if err != nil {
			return err
		}
		if h.Pending != 0 {
			return fmt.Errorf("%d pending", h.Pending)
		}
		return nil
	})
	ids := make([]chain.Hash, 0, len(acked))
	for id := range acked {
		ids = append(ids, id)
	}
	t.Logf("pending queue empty at %v", time.Since(testStart).Round(time.Millisecond))
	heights := map[chain.Hash]uint64{}
	var hmu sync.Mutex
	forEach(t, ids, 8, func(id chain.Hash) error {
		m, err := c.Message(context.Background(), id)
		if err != nil {
			return fmt.Errorf("acknowledged in round %d: GET /message/%s: %w", acked[id].round, id, err)
		}
		if want := acked[id].msg; m.Content != want.Content || m.Nonce != want.Nonce || string(m.Sender) != string(want.Sender[:]) {
			return fmt.Errorf("message %s: served %q nonce %d, acknowledged %q nonce %d", id, m.Content, m.Nonce, want.Content, want.Nonce)
		}
		if m.Status != api.StatusConfirmed || m.BlockHeight == nil {
			return fmt.Errorf("message %s: status %q with the pending queue empty", id, m.Status)
		}
		hmu.Lock()
		heights[id] = *m.BlockHeight
		hmu.Unlock()
		return nil
	})

	// No message is in two blocks, or twice in one; each acknowledged one is
	// in the block it says.
	ht, err := c.Height(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	blocks := allBlocks(t, n, ht.Height)
	checkChain(t, blocks)
	seen := map[chain.Hash]uint64{}
	for _, b := range blocks {
		for _, id := range b.MessageIDs {
			if h, dup := seen[id]; dup {
				t.Errorf("message %s is in block %d and again in block %d", id, h, b.Height)
			}
			seen[id] = b.Height
		}
	}
	for id, h := range heights {
		if got, ok := seen[id]; !ok || got != h {
			t.Errorf("message %s: confirmed at %d, found in blocks at %d (%v)", id, h, got, ok)
		}
	}
	t.Logf("%d acknowledged messages, %d sealed in %d blocks; checked at %v", len(acked), len(seen), len(blocks), time.Since(testStart).Round(time.Millisecond))

	stopGracefully(t, n)
	code, stdout, stderr := runBinary(t, "verify", "--db-path", db)
	if code != 0 {
		t.Fatalf("verify after the crashes: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	final, _ := lastProduced(n.Logs()) // blocks went on after the scan above
	if want := fmt.Sprintf("Chain integrity verified: %d blocks", max(final, ht.Height)+1); !strings.Contains(stdout, want) {
		t.Errorf("verify printed %q / %q, want %q", stdout, stderr, want)
	}
}

// forEach runs check on every id with workers goroutines and reports each
// error (at most 20) on t.
func forEach(t testing.TB, ids []chain.Hash, workers int, check func(chain.Hash) error) {
	t.Helper()
	work := make(chan chain.Hash)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				if err := check(id); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	for i, err := range errs {
		if i == 20 {
			t.Errorf("... and %d more", len(errs)-i)
			break
		}
		t.Error(err)
	}
}

// TestGracefulShutdownSignals: SIGINT and SIGTERM each stop a leader with
// exit code 0 within 5s, "Shutdown complete" last, and data that verifies.
func TestGracefulShutdownSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []string{"SIGINT", "SIGTERM"} {
		t.Run(sig, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, "--leader", "--test-mode")
			n.WaitHeight(2, 5*time.Second)
			// Work in hand at the signal: a message on its way to a block.
			if _, err := n.Client().Submit(t.Context(), ptr(chain.SignMessage(newSender(t), 1, "in flight"))); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var code int
			if sig == "SIGINT" {
				code = n.Interrupt()
			} else {
				code = n.Stop()
			}
			if code != 0 {
				t.Errorf("exit code %d after %s, want 0", code, sig)
			}
			if last := lastLine(n.Logs()); !strings.Contains(last, "Shutdown complete") {
				t.Errorf("last log line after %s is %q, want \"Shutdown complete\"", sig, last)
			}
			t.Logf("%s: exited in %v", sig, time.Since(start).Round(time.Millisecond))
			if code, stdout, stderr := runBinary(t, "verify", "--db-path", n.DBPath()); code != 0 {
				t.Errorf("verify after %s: exit %d: %s%s", sig, code, stdout, stderr)
			}
		})
	}
}
