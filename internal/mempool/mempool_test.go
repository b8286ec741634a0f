package mempool_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/mempool"
	"github.com/kimura-ledger/kimura/internal/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const maxContent = 64

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

var sender = testKey(1)

func sign(nonce uint64, content string) chain.Message {
	return chain.SignMessage(sender, nonce, content)
}

// clock is a fake time source in Unix milliseconds; each reading advances it.
type clock struct{ ms atomic.Uint64 }

func newClock() *clock {
	c := &clock{}
	c.ms.Store(1_700_000_000_000)
	return c
}

func (c *clock) now() uint64 { return c.ms.Add(1) }

// env is a pool over a real store in a temporary directory.
type env struct {
	t        *testing.T
	dir      string
	st       *store.Store
	pool     *mempool.Pool
	clock    *clock
	maxBytes int64 // the pool's Options.MaxBytes
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvBounded(t, 0)
}

// newEnvBounded is newEnv with a pool bounded to maxBytes.
func newEnvBounded(t *testing.T, maxBytes int64) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: newClock(), maxBytes: maxBytes}
	e.open()
	t.Cleanup(func() {
		if e.st != nil {
			_ = e.st.Close()
		}
	})
	return e
}

func (e *env) open() {
	e.t.Helper()
	st, err := store.Open(e.dir, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	pool, err := mempool.Open(st, mempool.Options{MaxContent: maxContent, MaxBytes: e.maxBytes, Now: e.clock.now})
	if err != nil {
		e.t.Fatal(err)
	}
	e.st, e.pool = st, pool
}

// reopen closes the store and opens store and pool again, as a restart does.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.st.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.st = nil
	e.open()
}

// submitOK submits msgs and fails the test unless all are accepted.
func (e *env) submitOK(msgs ...chain.Message) []chain.Message {
	e.t.Helper()
	accepted, errs := e.pool.Submit(msgs)
	for i, err := range errs {
		if err != nil {
			e.t.Fatalf("Submit of message %d: %v", i, err)
		}
	}
	if len(accepted) != len(msgs) {
		e.t.Fatalf("%d accepted of %d", len(accepted), len(msgs))
	}
	return accepted
}

// submitErr submits m alone and returns its error.
func (e *env) submitErr(m chain.Message) error {
	e.t.Helper()
	accepted, errs := e.pool.Submit([]chain.Message{m})
	if len(errs) != 1 {
		e.t.Fatalf("Submit returned %d errors for one message", len(errs))
	}
	if (errs[0] == nil) != (len(accepted) == 1) {
		e.t.Fatalf("Submit: accepted %d with error %v", len(accepted), errs[0])
	}
	return errs[0]
}

// seal commits a block of the first n pending messages, as the leader does,
// and removes them from the pool.
func (e *env) seal(n int) *chain.Block {
	e.t.Helper()
	taken := e.pool.Peek(n)
	msgs := make([]chain.Message, len(taken))
	seqs := make([]uint64, len(taken))
	for i := range taken {
		msgs[i], seqs[i] = taken[i].Message, taken[i].Seq
	}
	tip := e.st.Tip()
	b := chain.Seal(&tip.Header, msgs, e.clock.now(), testKey(9))
	conf := make([]store.Confirmed, len(msgs))
	for i := range msgs {
		conf[i] = store.Confirmed{Message: msgs[i], Height: b.Height, Index: uint32(i)}
	}
	if err := e.st.Commit(store.Commit{Blocks: []*chain.Block{b}, Messages: conf, Pending: seqs}); err != nil {
		e.t.Fatal(err)
	}
	e.pool.Remove(len(taken))
	return b
}

func ids(ps []store.Pending) []chain.Hash {
	out := make([]chain.Hash, len(ps))
	for i := range ps {
		out[i] = ps[i].Message.ID()
	}
	return out
}

func msgIDs(ms []chain.Message) []chain.Hash {
	out := make([]chain.Hash, len(ms))
	for i := range ms {
		out[i] = ms[i].ID()
	}
	return out
}

func sameIDs(t *testing.T, what string, got, want []chain.Hash) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
}

// Accepted messages are stamped, visible, and durable: a restart finds them
// in the same order.
func TestSubmitAcceptsAndIsDurable(t *testing.T) {
	e := newEnv(t)
	msgs := []chain.Message{sign(1, "a"), sign(2, ""), sign(3, strings.Repeat("x", maxContent))}
	accepted := e.submitOK(msgs...)
	for i, m := range accepted {
		if m.ID() != msgs[i].ID() || m.Content != msgs[i].Content || m.Signature != msgs[i].Signature {
			t.Fatalf("accepted %d is not the submitted message", i)
		}
		if m.Timestamp == 0 {
			t.Fatalf("accepted %d was not stamped", i)
		}
		got, ok := e.pool.Get(m.ID())
		if !ok || got != m {
			t.Fatalf("Get(%s) = %+v, %v; want the stamped message", m.ID(), got, ok)
		}
	}
	if e.pool.Len() != 3 {
		t.Fatalf("Len = %d, want 3", e.pool.Len())
	}

	e.reopen()
	ps, err := e.st.LoadPending()
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "LoadPending after restart", ids(ps), msgIDs(msgs))
	for i := range ps {
		if ps[i].Message != accepted[i] {
			t.Fatalf("durable %d = %+v, want %+v", i, ps[i].Message, accepted[i])
		}
	}
	if e.pool.Len() != 3 {
		t.Fatalf("Len after restart = %d, want 3", e.pool.Len())
	}
	sameIDs(t, "Peek after restart", ids(e.pool.Peek(10)), msgIDs(msgs))
	// Sequence numbers continue after a restart: new messages queue behind.
	late := e.submitOK(sign(4, "d"))
	sameIDs(t, "Peek", ids(e.pool.Peek(10)), msgIDs(append(msgs, late...)))
}

func TestSubmitRefusesBadSignature(t *testing.T) {
	e := newEnv(t)
	for name, m := range map[string]chain.Message{
		"content changed": func() chain.Message { m := sign(1, "a"); m.Content = "b"; return m }(),
		"nonce changed":   func() chain.Message { m := sign(1, "a"); m.Nonce = 2; return m }(),
		"foreign signer":  func() chain.Message { m := sign(1, "a"); m.Sender[0] ^= 1; return m }(),
		"zero signature":  func() chain.Message { m := sign(1, "a"); m.Signature = chain.Signature{}; return m }(),
		"not UTF-8":       sign(1, "\xff\xfe"),
	} {
		if err := e.submitErr(m); !errors.Is(err, mempool.ErrInvalid) {
			t.Errorf("%s: Submit = %v, want ErrInvalid", name, err)
		}
		if _, ok := e.pool.Get(m.ID()); ok {
			t.Errorf("%s: refused message is pending", name)
		}
	}
	if e.pool.Len() != 0 {
		t.Fatalf("Len = %d after refusals", e.pool.Len())
	}
	// A refusal reserves nothing: the correctly signed message is accepted.
	e.submitOK(sign(1, "a"))
}

func TestSubmitRefusesOversize(t *testing.T) {
	e := newEnv(t)
	big := sign(1, strings.Repeat("x", maxContent+1))
	if err := e.submitErr(big); !errors.Is(err, mempool.ErrTooLarge) {
		t.Fatalf("Submit of %d bytes = %v, want ErrTooLarge", len(big.Content), err)
	}
	// The limit counts bytes, not characters.
	multi := sign(2, strings.Repeat("é", maxContent/2)+"x")
	if err := e.submitErr(multi); !errors.Is(err, mempool.ErrTooLarge) {
		t.Fatalf("Submit of %d bytes = %v, want ErrTooLarge", len(multi.Content), err)
	}
	e.submitOK(sign(3, strings.Repeat("é", maxContent/2)))
}

func TestSubmitRefusesDuplicatePending(t *testing.T) {
	e := newEnv(t)
	first := e.submitOK(sign(1, "first"))[0]
	for _, m := range []chain.Message{sign(1, "first"), sign(1, "other content, same nonce")} {
		if err := e.submitErr(m); !errors.Is(err, mempool.ErrDuplicate) {
			t.Fatalf("Submit = %v, want ErrDuplicate", err)
		}
	}
	if got, ok := e.pool.Get(first.ID()); !ok || got != first {
		t.Fatalf("Get = %+v, %v; want the first message", got, ok)
	}
	if e.pool.Len() != 1 {
		t.Fatalf("Len = %d, want 1", e.pool.Len())
	}
	// Also after a restart, from the durable queue.
	e.reopen()
	if err := e.submitErr(sign(1, "again")); !errors.Is(err, mempool.ErrDuplicate) {
		t.Fatalf("Submit after restart = %v, want ErrDuplicate", err)
	}
}

// Once its block is committed and the message has left the queue, the
// (sender, nonce) stays taken forever.
func TestSubmitRefusesDuplicateConfirmed(t *testing.T) {
	e := newEnv(t)
	m := e.submitOK(sign(1, "to be confirmed"))[0]
	e.seal(1)
	if e.pool.Len() != 0 {
		t.Fatalf("Len = %d after sealing, want 0", e.pool.Len())
	}
	if _, ok := e.pool.Get(m.ID()); ok {
		t.Fatal("a confirmed message is still pending")
	}
	for _, dup := range []chain.Message{sign(1, "to be confirmed"), sign(1, "new content")} {
		if err := e.submitErr(dup); !errors.Is(err, mempool.ErrDuplicate) {
			t.Fatalf("Submit of a confirmed (sender, nonce) = %v, want ErrDuplicate", err)
		}
	}
	e.reopen()
	if err := e.submitErr(sign(1, "after restart")); !errors.Is(err, mempool.ErrDuplicate) {
		t.Fatalf("Submit after restart = %v, want ErrDuplicate", err)
	}
	if ps, err := e.st.LoadPending(); err != nil || len(ps) != 0 {
		t.Fatalf("LoadPending = %v, %v; want empty", ps, err)
	}
}

// Each message of a batch is judged on its own, duplicates within the batch
// included.
func TestSubmitBatchJudgesEachMessage(t *testing.T) {
	e := newEnv(t)
	e.submitOK(sign(1, "already pending"))
	bad := sign(3, "x")
	bad.Content = "y"
	batch := []chain.Message{
		sign(2, "ok"),
		sign(1, "duplicate of pending"),
		bad,
		sign(4, strings.Repeat("z", maxContent+1)),
		sign(5, "ok too"),
		sign(5, "duplicate within the batch"),
		sign(2, "duplicate of the first in the batch"),
	}
	want := []error{nil, mempool.ErrDuplicate, mempool.ErrInvalid, mempool.ErrTooLarge, nil, mempool.ErrDuplicate, mempool.ErrDuplicate}
	accepted, errs := e.pool.Submit(batch)
	for i := range batch {
		if want[i] == nil && errs[i] != nil || want[i] != nil && !errors.Is(errs[i], want[i]) {
			t.Errorf("message %d: %v, want %v", i, errs[i], want[i])
		}
	}
	sameIDs(t, "accepted", msgIDs(accepted), msgIDs([]chain.Message{batch[0], batch[4]}))
	if accepted[1].Content != "ok too" {
		t.Fatalf("the first of two with the same nonce should win, got %q", accepted[1].Content)
	}
	if e.pool.Len() != 3 {
		t.Fatalf("Len = %d, want 3", e.pool.Len())
	}
}

// Of 50 concurrent submissions of the same (sender, nonce), exactly one is
// accepted, and exactly one is durable.
func TestConcurrentSubmitSameNonceAcceptsOne(t *testing.T) {
	e := newEnv(t)
	const n = 50
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		accepted atomic.Int32
		dups     atomic.Int32
		other    = make(chan error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := sign(7, fmt.Sprintf("attempt %d", i))
			<-start
			_, errs := e.pool.Submit([]chain.Message{m})
			switch {
			case errs[0] == nil:
				accepted.Add(1)
			case errors.Is(errs[0], mempool.ErrDuplicate):
				dups.Add(1)
			default:
				other <- errs[0]
			}
		}()
	}
	close(start)
	wg.Wait()
	close(other)
	for err := range other {
		t.Errorf("unexpected error: %v", err)
	}
	if accepted.Load() != 1 || dups.Load() != n-1 {
		t.Fatalf("accepted %d, duplicates %d; want 1 and %d", accepted.Load(), dups.Load(), n-1)
	}
	if e.pool.Len() != 1 {
		t.Fatalf("Len = %d, want 1", e.pool.Len())
	}
	ps, err := e.st.LoadPending()
	if err != nil || len(ps) != 1 {
		t.Fatalf("LoadPending = %d messages, %v; want 1", len(ps), err)
	}
}

// Peek hands out messages in acknowledgement order; Remove drops exactly
// the ones taken, and those submitted in between stay, in order.
func TestPeekRemoveOrder(t *testing.T) {
	e := newEnv(t)
	var all []chain.Message
	for i := range 5 {
		all = append(all, e.submitOK(sign(uint64(10-i), fmt.Sprint("m", i)))...)
	}
	sameIDs(t, "Peek(3)", ids(e.pool.Peek(3)), msgIDs(all[:3]))
	sameIDs(t, "Peek(100)", ids(e.pool.Peek(100)), msgIDs(all))
	if len(e.pool.Peek(0)) != 0 {
		t.Fatal("Peek(0) returned messages")
	}

	taken := e.pool.Peek(3)
	late := e.submitOK(sign(100, "between peek and remove"), sign(101, "also"))
	e.pool.Remove(len(taken))
	rest := append(all[3:], late...)
	sameIDs(t, "after Remove", ids(e.pool.Peek(100)), msgIDs(rest))
	if e.pool.Len() != len(rest) {
		t.Fatalf("Len = %d, want %d", e.pool.Len(), len(rest))
	}
	for _, m := range all[:3] {
		if _, ok := e.pool.Get(m.ID()); ok {
			t.Fatalf("removed message %s still pending", m.ID())
		}
	}
	for _, m := range rest {
		if _, ok := e.pool.Get(m.ID()); !ok {
			t.Fatalf("message %s lost", m.ID())
		}
	}

	// Many rounds of the sealer's cycle keep the order (the queue compacts
	// itself as it goes).
	next := uint64(1000)
	for round := range 20 {
		for range round % 4 {
			rest = append(rest, e.submitOK(sign(next, "r"))...)
			next++
		}
		k := min(len(rest), round%3+1)
		sameIDs(t, fmt.Sprint("round ", round), ids(e.pool.Peek(k)), msgIDs(rest[:k]))
		e.pool.Remove(k)
		rest = rest[k:]
		sameIDs(t, fmt.Sprint("round ", round, " rest"), ids(e.pool.Peek(1000)), msgIDs(rest))
	}
}

// A sealed block's messages leave pool and disk together; the messages that
// arrived after the sealer's Peek stay pending on disk too.
func TestSealKeepsLaterMessages(t *testing.T) {
	e := newEnv(t)
	first := e.submitOK(sign(1, "a"), sign(2, "b"))
	taken := e.pool.Peek(10)
	late := e.submitOK(sign(3, "c"))
	msgs := []chain.Message{taken[0].Message, taken[1].Message}
	tip := e.st.Tip()
	b := chain.Seal(&tip.Header, msgs, e.clock.now(), testKey(9))
	if err := e.st.Commit(store.Commit{
		Blocks:   []*chain.Block{b},
		Messages: []store.Confirmed{{Message: msgs[0], Height: 1, Index: 0}, {Message: msgs[1], Height: 1, Index: 1}},
		Pending:  []uint64{taken[0].Seq, taken[1].Seq},
	}); err != nil {
		t.Fatal(err)
	}
	e.pool.Remove(len(taken))
	sameIDs(t, "pool", ids(e.pool.Peek(10)), msgIDs(late))
	ps, err := e.st.LoadPending()
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "disk", ids(ps), msgIDs(late))
	for _, m := range first {
		if err := e.submitErr(m); !errors.Is(err, mempool.ErrDuplicate) {
			t.Fatalf("resubmitting a sealed message: %v, want ErrDuplicate", err)
		}
	}
}

// gatedStore holds AddPending until the test lets it through, so that the
// test can look at the pool while a write is in flight.
type gatedStore struct {
	*store.Store
	entered chan struct{}
	release chan error
	// checked, when set, gets how many IDs each uniqueness check asks
	// about: a check of none is a submission whose every message waits
	// for a write in flight.
	checked chan int
}

func (g *gatedStore) HasMessages(ids []chain.Hash) ([]bool, error) {
	if g.checked != nil {
		g.checked <- len(ids)
	}
	return g.Store.HasMessages(ids)
}

func (g *gatedStore) AddPending(ps []store.Pending) error {
	g.entered <- struct{}{}
	if err := <-g.release; err != nil {
		return err
	}
	return g.Store.AddPending(ps)
}

// Get, Peek and Len see a message only once it is durable; while it is
// being written its ID is already taken; a failed write frees it again.
func TestGetReturnsOnlyDurable(t *testing.T) {
	e := newEnv(t)
	g := &gatedStore{Store: e.st, entered: make(chan struct{}), release: make(chan error), checked: make(chan int, 16)}
	pool, err := mempool.Open(g, mempool.Options{MaxContent: maxContent, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	m := sign(1, "in flight")

	submit := func() <-chan []error {
		done := make(chan []error, 1)
		go func() {
			_, errs := pool.Submit([]chain.Message{m})
			done <- errs
		}()
		return done
	}

	// A write that fails: nothing becomes visible and the ID is free again.
	done := submit()
	<-g.entered
	if _, ok := pool.Get(m.ID()); ok {
		t.Fatal("Get sees a message that is not yet durable")
	}
	injected := errors.New("disk full")
	g.release <- injected
	if errs := <-done; !errors.Is(errs[0], injected) {
		t.Fatalf("Submit with a failing store = %v, want the store's error", errs[0])
	}
	if _, ok := pool.Get(m.ID()); ok || pool.Len() != 0 {
		t.Fatal("a message whose write failed is pending")
	}

	// A write that succeeds.
	done = submit()
	<-g.entered
	if _, ok := pool.Get(m.ID()); ok {
		t.Fatal("Get sees a message that is not yet durable")
	}
	if pool.Len() != 0 || len(pool.Peek(10)) != 0 {
		t.Fatal("Len or Peek count a message that is not yet durable")
	}
	// Its ID is taken while it is written, but the message is not pending
	// yet: the same (sender, nonce) waits for the write to be judged.
	same := make(chan []error, 1)
	go func() {
		_, errs := pool.Submit([]chain.Message{sign(1, "same nonce")})
		same <- errs
	}()
	waitingForWrite(t, g)
	select {
	case errs := <-same:
		t.Fatalf("Submit of the in-flight (sender, nonce) answered %v before the write was done", errs)
	default:
	}
	g.release <- nil
	if errs := <-done; errs[0] != nil {
		t.Fatal(errs[0])
	}
	if errs := <-same; !errors.Is(errs[0], mempool.ErrDuplicate) {
		t.Fatalf("Submit of the (sender, nonce) that was in flight, once durable = %v, want ErrDuplicate", errs[0])
	}
	got, ok := pool.Get(m.ID())
	if !ok || got.ID() != m.ID() || got.Timestamp == 0 {
		t.Fatalf("Get after the write = %+v, %v", got, ok)
	}
	ps, err := e.st.LoadPending()
	if err != nil || len(ps) != 1 || ps[0].Message != got {
		t.Fatalf("LoadPending = %+v, %v; want the message Get returns", ps, err)
	}
	if _, ok := pool.Get(chain.MessageID(m.Sender, 2)); ok {
		t.Fatal("Get of an unknown ID succeeded")
	}
}

// waitingForWrite waits until a submission has been judged and found
// nothing to write: its message waits for the write in flight. Checks of
// other submissions (the one in flight asked about its own ID) are skipped.
func waitingForWrite(t *testing.T, g *gatedStore) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case n := <-g.checked:
			if n == 0 {
				return
			}
		case <-timeout:
			t.Fatal("no submission came to wait for the write in flight")
		}
	}
}

// A submission of a (sender, nonce) whose first message is being written
// waits for that write; when the write fails, it is judged afresh and
// accepted, rather than refused as a duplicate of a message that never was.
func TestInFlightDuplicateJudgedAgainWhenWriteFails(t *testing.T) {
	e := newEnv(t)
	g := &gatedStore{Store: e.st, entered: make(chan struct{}), release: make(chan error), checked: make(chan int, 16)}
	pool, err := mempool.Open(g, mempool.Options{MaxContent: maxContent, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	first, second := sign(1, "first"), sign(1, "second, same nonce")
	answers := func(m chain.Message) <-chan []error {
		done := make(chan []error, 1)
		go func() {
			_, errs := pool.Submit([]chain.Message{m})
			done <- errs
		}()
		return done
	}
	done1 := answers(first)
	<-g.entered
	done2 := answers(second)
	waitingForWrite(t, g)
	injected := errors.New("disk full")
	g.release <- injected
	if errs := <-done1; !errors.Is(errs[0], injected) {
		t.Fatalf("first Submit with a failing store = %v, want the store's error", errs[0])
	}
	select {
	case <-g.entered: // the second is written now
	case errs := <-done2:
		t.Fatalf("second Submit after the first's write failed = %v, without a write of its own; want accepted", errs[0])
	}
	g.release <- nil
	if errs := <-done2; errs[0] != nil {
		t.Fatalf("second Submit after the first's write failed = %v, want accepted", errs[0])
	}
	got, ok := pool.Get(first.ID())
	if !ok || got.Content != second.Content {
		t.Fatalf("pending under the ID: %+v, %v; want the second message", got, ok)
	}
}

// A second copy of a message in the same submission shares the first's
// fate: when the write of the first fails, the second gets that failure,
// not 409 for an ID that is neither pending nor confirmed.
func TestDuplicateWithinBatchFailsWithTheWrite(t *testing.T) {
	e := newEnv(t)
	g := &gatedStore{Store: e.st, entered: make(chan struct{}), release: make(chan error)}
	pool, err := mempool.Open(g, mempool.Options{MaxContent: maxContent, Now: e.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	first := sign(1, "first")
	done := make(chan []error, 1)
	go func() {
		_, errs := pool.Submit([]chain.Message{first, sign(1, "second, same nonce")})
		done <- errs
	}()
	<-g.entered
	injected := errors.New("disk full")
	g.release <- injected
	errs := <-done
	for i, err := range errs {
		if !errors.Is(err, injected) {
			t.Errorf("message %d of a batch whose write failed: %v, want the store's error", i, err)
		}
	}
	if _, ok := pool.Get(first.ID()); ok || pool.Len() != 0 {
		t.Error("a message of the failed write is pending")
	}
}

// Concurrent submissions are combined into shared batches; each caller still
// gets exactly its own answers, in its own order, and every accepted
// message is durable exactly once.
func TestConcurrentSubmitDistinct(t *testing.T) {
	e := newEnv(t)
	const callers = 40
	type answer struct {
		msgs     []chain.Message
		accepted []chain.Message
		errs     []error
	}
	answers := make([]answer, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range callers {
		key := testKey(byte(10 + g))
		bad := chain.SignMessage(key, 2, "bad")
		bad.Content = "tampered"
		msgs := []chain.Message{
			chain.SignMessage(key, 1, "first"),
			bad,
			chain.SignMessage(key, 3, "third"),
			chain.SignMessage(key, 1, "duplicate of the first"),
			chain.SignMessage(key, 5, strings.Repeat("x", maxContent+1)),
			chain.SignMessage(key, 6, "sixth"),
		}
		answers[g].msgs = msgs
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[g].accepted, answers[g].errs = e.pool.Submit(msgs)
		}()
	}
	close(start)
	wg.Wait()

	want := []error{nil, mempool.ErrInvalid, nil, mempool.ErrDuplicate, mempool.ErrTooLarge, nil}
	all := map[chain.Hash]bool{}
	for g, a := range answers {
		for i, err := range a.errs {
			if want[i] == nil && err != nil || want[i] != nil && !errors.Is(err, want[i]) {
				t.Fatalf("caller %d, message %d: %v, want %v", g, i, err, want[i])
			}
		}
		sameIDs(t, fmt.Sprint("caller ", g, " accepted"), msgIDs(a.accepted), msgIDs([]chain.Message{a.msgs[0], a.msgs[2], a.msgs[5]}))
		for i, m := range a.accepted {
			if m.Content != []string{"first", "third", "sixth"}[i] || m.Timestamp == 0 {
				t.Fatalf("caller %d accepted %d = %+v", g, i, m)
			}
			all[m.ID()] = true
		}
	}
	if e.pool.Len() != 3*callers || len(all) != 3*callers {
		t.Fatalf("Len = %d, distinct accepted %d; want %d", e.pool.Len(), len(all), 3*callers)
	}
	ps, err := e.st.LoadPending()
	if err != nil {
		t.Fatal(err)
	}
	onDisk := map[chain.Hash]bool{}
	for _, p := range ps {
		onDisk[p.Message.ID()] = true
	}
	if len(ps) != 3*callers || len(onDisk) != len(ps) {
		t.Fatalf("%d pending on disk (%d distinct), want %d", len(ps), len(onDisk), 3*callers)
	}
	for id := range all {
		if !onDisk[id] {
			t.Fatalf("accepted %s is not on disk", id)
		}
	}
	// Peek hands out every pending message once.
	peeked := map[chain.Hash]bool{}
	for _, p := range e.pool.Peek(10 * callers) {
		peeked[p.Message.ID()] = true
	}
	if len(peeked) != 3*callers {
		t.Fatalf("Peek returned %d distinct, want %d", len(peeked), 3*callers)
	}
}

// The queue takes messages up to Options.MaxBytes (content plus
// MessageOverhead each), refuses the rest with ErrFull and writes nothing for
// them, stays full across a restart, and takes messages again once a block
// has made room.
func TestFullQueueRefusesUntilSealed(t *testing.T) {
	const content = "0123456789"
	e := newEnvBounded(t, 3*int64(len(content)+mempool.MessageOverhead))
	e.submitOK(sign(1, content), sign(2, content))
	// A batch that crosses the bound: what fits is taken, in order.
	third, fourth := sign(3, content), sign(4, content)
	accepted, errs := e.pool.Submit([]chain.Message{third, fourth, sign(5, "")})
	if len(accepted) != 1 || accepted[0].ID() != third.ID() || errs[0] != nil {
		t.Fatalf("batch crossing the bound: accepted %d, errors %v", len(accepted), errs)
	}
	for _, err := range errs[1:] {
		if !errors.Is(err, mempool.ErrFull) {
			t.Fatalf("over the bound: %v, want ErrFull", err)
		}
	}
	if _, ok := e.pool.Get(fourth.ID()); ok {
		t.Fatal("a refused message is pending")
	}
	if ps, err := e.st.LoadPending(); err != nil || len(ps) != 3 {
		t.Fatalf("durable queue: %d messages, %v; want 3", len(ps), err)
	}

	e.reopen()
	if err := e.submitErr(sign(4, content)); !errors.Is(err, mempool.ErrFull) {
		t.Fatalf("after a restart with a full queue: %v, want ErrFull", err)
	}
	e.seal(1)
	e.submitOK(sign(4, content))
	if err := e.submitErr(sign(5, "")); !errors.Is(err, mempool.ErrFull) {
		t.Fatalf("full again: %v, want ErrFull", err)
	}
	// A refusal for a reason of its own says so, not ErrFull.
	if err := e.submitErr(sign(2, content)); !errors.Is(err, mempool.ErrDuplicate) {
		t.Fatalf("a pending duplicate in a full queue: %v, want ErrDuplicate", err)
	}
}

func TestSubmitNothing(t *testing.T) {
	e := newEnv(t)
	accepted, errs := e.pool.Submit(nil)
	if len(accepted) != 0 || len(errs) != 0 {
		t.Fatalf("Submit(nil) = %v, %v", accepted, errs)
	}
}
