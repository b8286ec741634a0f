// Package mempool is the leader's pending queue: it judges submitted
// messages, makes the accepted ones durable through the store before it
// answers, and hands them to the sealer in the order they were acknowledged.
//
// The Pool is the one owner of the in-memory queue and of the set of IDs that
// are pending or being written; the store holds the durable copy. A message
// is visible (Get, Peek) only once it is durable.
package mempool

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/store"
)

// Reasons a submission is refused. Each is wrapped with detail; test with errors.Is.
var (
	// ErrDuplicate: the (sender, nonce) is already pending or confirmed.
	ErrDuplicate = errors.New("message already exists")
	// ErrTooLarge: the content is over the node's limit.
	ErrTooLarge = errors.New("content too large")
	// ErrInvalid: bad signature or content that is not UTF-8.
	ErrInvalid = errors.New("invalid message")
	// ErrFull: the queue holds Options.MaxBytes already; the message may be
	// submitted again once blocks have taken some.
	ErrFull = errors.New("pending queue full")
)

// MessageOverhead is what a pending message costs the pool in memory beyond
// its content (its fixed fields, its index entries), for Options.MaxBytes.
const MessageOverhead = 256

// cost is what m counts against Options.MaxBytes.
func cost(m *chain.Message) int64 { return int64(len(m.Content)) + MessageOverhead }

// Options are the pool's limits and clock.
type Options struct {
	// MaxContent is the content limit in bytes.
	MaxContent int
	// MaxBytes bounds the queue: content plus MessageOverhead per message,
	// counting messages being written. A submission that would pass it is
	// refused with ErrFull. Zero means no bound. A queue loaded at Open may
	// start above it (the bound was lowered); it then takes nothing new
	// until blocks have drained it below.
	MaxBytes int64
	// Now returns the time in Unix milliseconds, used to stamp messages.
	Now func() uint64
}

// maxCombine is about the most messages one combined write takes.
const maxCombine = 4096

// combiners is how many combined batches may be verified or written at
// once: enough to keep every core verifying while another batch waits on
// its fsync.
func combiners() int { return 2 * runtime.GOMAXPROCS(0) }

// Store is what the pool needs of the database.
type Store interface {
	AddPending([]store.Pending) error
	LoadPending() ([]store.Pending, error)
	HasMessages([]chain.Hash) ([]bool, error)
}

// Pool is the pending queue. Its methods are safe for concurrent use; Peek
// and Remove are meant for one sealer at a time.
type Pool struct {
	store Store
	opt   Options

	slots   chan struct{} // combining slots: how many batches are in flight at once
	waitMu  sync.Mutex
	waiting []*request // submissions not yet taken by a combiner

	mu      sync.Mutex
	nextSeq uint64
	ids     map[chain.Hash]*store.Pending // pending or being written; nil value while being written
	settled chan struct{}                 // closed (and replaced) whenever IDs being written stop being so
	queue   []*store.Pending              // durable, in acknowledgement order; queue[head:] is live
	head    int
	bytes   int64 // cost of the messages in ids
}

// Open loads the durable queue from st.
func Open(st Store, o Options) (*Pool, error) {
	ps, err := st.LoadPending()
	if err != nil {
		return nil, fmt.Errorf("mempool: load: %w", err)
	}
	p := &Pool{
		store: st, opt: o,
		slots:   make(chan struct{}, combiners()),
		ids:     make(map[chain.Hash]*store.Pending, len(ps)),
		settled: make(chan struct{}),
	}
	for i := range ps {
		e := &ps[i]
		p.ids[e.Message.ID()] = e
		p.queue = append(p.queue, e)
		p.nextSeq = e.Seq + 1
		p.bytes += cost(&e.Message)
	}
	return p, nil
}

// Submit judges each message on its own: content limit, UTF-8 and signature,
// then uniqueness of (sender, nonce) among pending and confirmed messages,
// then room in the queue.
// The accepted ones are stamped and written in one synced batch; Submit
// returns once they are durable. errs[i] is nil for an accepted msgs[i].
//
// Concurrent calls are combined: whichever caller gets one of the
// combining slots takes every submission waiting at that moment, verifies
// their signatures as one batch and makes them durable with one synced write,
// so concurrent clients share both signature work and fsyncs.
func (p *Pool) Submit(msgs []chain.Message) (accepted []chain.Message, errs []error) {
	r := &request{msgs: msgs, errs: make([]error, len(msgs)), done: make(chan struct{})}
	p.waitMu.Lock()
	p.waiting = append(p.waiting, r)
	p.waitMu.Unlock()

	p.slots <- struct{}{}
	// Combine until this caller's own request is done (by this or another
	// combiner): the waiting list is FIFO, so its work is bounded.
	for !r.finished() {
		batch := p.takeWaiting()
		if len(batch) == 0 {
			break // another combiner holds ours
		}
		p.process(batch)
	}
	<-p.slots
	<-r.done
	return r.accepted, r.errs
}

// request is one Submit call waiting to be processed by a combiner.
type request struct {
	msgs     []chain.Message
	errs     []error
	accepted []chain.Message
	done     chan struct{}
}

func (r *request) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// takeWaiting removes and returns waiting requests, about maxCombine
// messages' worth.
func (p *Pool) takeWaiting() []*request {
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	n, k := 0, 0
	for k < len(p.waiting) && n < maxCombine {
		n += len(p.waiting[k].msgs)
		k++
	}
	batch := append([]*request(nil), p.waiting[:k]...)
	rest := copy(p.waiting, p.waiting[k:])
	clear(p.waiting[rest:]) // the backing array must not keep finished requests (and their content) alive
	p.waiting = p.waiting[:rest]
	return batch
}

// process judges, reserves and writes the messages of batch together and
// then releases every request of it.
func (p *Pool) process(batch []*request) {
	n := 0
	for _, r := range batch {
		n += len(r.msgs)
	}
	all := make([]chain.Message, 0, n)
	for _, r := range batch {
		all = append(all, r.msgs...)
	}
	errs := make([]error, len(all))
	toVerify := make([]chain.Message, 0, n)
	at := make([]int, 0, n)
	for i := range all {
		if len(all[i].Content) > p.opt.MaxContent {
			errs[i] = fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(all[i].Content), p.opt.MaxContent)
			continue
		}
		toVerify = append(toVerify, all[i])
		at = append(at, i)
	}
	for j, err := range chain.VerifyMessages(toVerify) {
		if err != nil {
			errs[at[j]] = fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	stamped := make([]*chain.Message, len(all))
	p.admit(all, errs, stamped)
	off := 0
	for _, r := range batch {
		copy(r.errs, errs[off:off+len(r.msgs)])
		r.accepted = make([]chain.Message, 0, len(r.msgs))
		for i := range r.msgs {
			if r.errs[i] == nil {
				r.accepted = append(r.accepted, *stamped[off+i])
			}
		}
		off += len(r.msgs)
		close(r.done)
	}
}

// admit takes the messages of msgs that have no error yet: it reserves
// them, writes them in one synced batch and makes them visible, and sets
// either errs[i] or stamped[i] (the message as queued, with its timestamp)
// for each.
//
// A message whose (sender, nonce) another combiner is writing at that
// moment is neither pending nor confirmed yet, so it is not refused as a
// duplicate: it waits for that write and is judged again, a duplicate if
// the write made it durable, afresh if the write failed. admit waits only
// once its own write is done, so two combiners never wait for each other.
func (p *Pool) admit(msgs []chain.Message, errs []error, stamped []*chain.Message) {
	pending, from, twins, waits := p.reserve(msgs, errs)
	var err error
	if len(pending) > 0 {
		err = p.store.AddPending(pending)
	}
	defer func() {
		// A second copy shares its first copy's fate: a duplicate once
		// the first is pending, the same refusal or failure otherwise
		// (never 409 for an ID whose write failed).
		for _, t := range twins {
			if errs[t.i] = errs[t.first]; errs[t.i] == nil {
				errs[t.i] = fmt.Errorf("%w: %s is pending", ErrDuplicate, msgs[t.i].ID())
			}
		}
	}()
	p.mu.Lock()
	for j := range pending {
		e := &pending[j]
		id := e.Message.ID()
		if err != nil {
			delete(p.ids, id)
			p.bytes -= cost(&e.Message)
			errs[from[j]] = fmt.Errorf("mempool: %w", err)
			continue
		}
		p.ids[id] = e
		p.queue = append(p.queue, e)
		stamped[from[j]] = &e.Message
	}
	if len(pending) > 0 {
		p.settle()
	}
	if len(waits) == 0 {
		p.mu.Unlock()
		return
	}
	for _, i := range waits {
		id := msgs[i].ID()
		for e, taken := p.ids[id]; taken && e == nil; e, taken = p.ids[id] {
			settled := p.settled
			p.mu.Unlock()
			<-settled
			p.mu.Lock()
		}
	}
	p.mu.Unlock()
	again := make([]chain.Message, len(waits))
	for k, i := range waits {
		again[k] = msgs[i]
	}
	againErrs := make([]error, len(again))
	againStamped := make([]*chain.Message, len(again))
	p.admit(again, againErrs, againStamped)
	for k, i := range waits {
		errs[i], stamped[i] = againErrs[k], againStamped[k]
	}
}

// settle wakes whoever waits for IDs being written: some no longer are.
// p.mu must be held.
func (p *Pool) settle() {
	close(p.settled)
	p.settled = make(chan struct{})
}

// twin is msgs[i], a later copy (same ID) of msgs[first] in one admit.
type twin struct{ i, first int }

// reserve claims the IDs of the messages still without error, stamps them and
// gives them sequence numbers; from[j] is the index in msgs of pending[j].
// A duplicate of a pending or confirmed message gets ErrDuplicate, and a
// message the queue has no room for ErrFull; a later copy of a message
// reserved here is left for admit to judge by the first copy's outcome
// (twins), and one whose ID another write holds is left to wait for it
// (waits: indexes in msgs).
func (p *Pool) reserve(msgs []chain.Message, errs []error) (pending []store.Pending, from []int, twins []twin, waits []int) {
	batch := make([]store.Pending, 0, len(msgs))
	from = make([]int, 0, len(msgs))
	ids := make([]chain.Hash, 0, len(msgs))
	now := p.opt.Now()
	p.mu.Lock()
	for i := range msgs {
		if errs[i] != nil {
			continue
		}
		id := msgs[i].ID()
		if e, taken := p.ids[id]; taken {
			switch j := slices.Index(ids, id); {
			case e != nil:
				errs[i] = fmt.Errorf("%w: %s is pending", ErrDuplicate, id)
			case j >= 0:
				twins = append(twins, twin{i: i, first: from[j]})
			default:
				waits = append(waits, i)
			}
			continue
		}
		c := cost(&msgs[i])
		if p.opt.MaxBytes > 0 && p.bytes+c > p.opt.MaxBytes {
			errs[i] = fmt.Errorf("%w: it holds %d of %d bytes; retry once a block has been sealed", ErrFull, p.bytes, p.opt.MaxBytes)
			continue
		}
		p.bytes += c
		p.ids[id] = nil
		m := msgs[i]
		m.Timestamp = now
		batch = append(batch, store.Pending{Seq: p.nextSeq, Message: m})
		from = append(from, i)
		ids = append(ids, id)
		p.nextSeq++
	}
	p.mu.Unlock()
	// A confirmed message left the pending set after its block committed, so
	// once its ID is reserved, the store answers for it.
	kept, keptFrom := batch[:0], from[:0]
	var dropped []store.Pending
	confirmed, err := p.store.HasMessages(ids)
	for j, e := range batch {
		switch {
		case err != nil:
			errs[from[j]] = fmt.Errorf("mempool: %w", err)
			dropped = append(dropped, e)
		case confirmed[j]:
			errs[from[j]] = fmt.Errorf("%w: %s is confirmed", ErrDuplicate, ids[j])
			dropped = append(dropped, e)
		default:
			kept, keptFrom = append(kept, e), append(keptFrom, from[j])
		}
	}
	p.mu.Lock()
	for i := range dropped {
		delete(p.ids, dropped[i].Message.ID())
		p.bytes -= cost(&dropped[i].Message)
	}
	if len(dropped) > 0 {
		p.settle()
	}
	p.mu.Unlock()
	return kept, keptFrom, twins, waits
}

// Get returns a durable pending message.
func (p *Pool) Get(id chain.Hash) (chain.Message, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.ids[id]; e != nil {
		return e.Message, true
	}
	return chain.Message{}, false
}

// Len is the number of durable pending messages.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue) - p.head
}

// Peek returns up to max messages from the head of the queue, oldest first.
// The caller seals them and, once the block is committed, calls Remove with
// how many it took.
func (p *Pool) Peek(max int) []store.Pending {
	p.mu.Lock()
	defer p.mu.Unlock()
	live := p.queue[p.head:]
	n := min(max, len(live))
	out := make([]store.Pending, n)
	for i := range out {
		out[i] = *live[i]
	}
	return out
}

// Remove drops the n oldest messages, which a committed block now holds.
// Messages that arrived meanwhile were appended behind them and stay.
func (p *Pool) Remove(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.queue[p.head : p.head+n] {
		delete(p.ids, e.Message.ID())
		p.bytes -= cost(&e.Message)
	}
	clear(p.queue[p.head : p.head+n])
	p.head += n
	if p.head > len(p.queue)/2 {
		p.queue = append(p.queue[:0:0], p.queue[p.head:]...)
		p.head = 0
	}
}
