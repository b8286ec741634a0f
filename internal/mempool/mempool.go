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
)

// Store is what the pool needs of the database.
type Store interface {
	AddPending([]store.Pending) error
	LoadPending() ([]store.Pending, error)
	HasMessage(chain.Hash) (bool, error)
}

// Pool is the pending queue. Its methods are safe for concurrent use; Peek
// and Remove are meant for one sealer at a time.
type Pool struct {
	store      Store
	maxContent int
	now        func() uint64

	mu      sync.Mutex
	nextSeq uint64
	ids     map[chain.Hash]*store.Pending // pending or being written; nil value while being written
	queue   []*store.Pending              // durable, in acknowledgement order; queue[head:] is live
	head    int
}

// Open loads the durable queue from st. maxContent is the content limit in
// bytes; now returns the time in Unix milliseconds, used to stamp messages.
func Open(st Store, maxContent int, now func() uint64) (*Pool, error) {
	ps, err := st.LoadPending()
	if err != nil {
		return nil, fmt.Errorf("mempool: load: %w", err)
	}
	p := &Pool{store: st, maxContent: maxContent, now: now, ids: make(map[chain.Hash]*store.Pending, len(ps))}
	for i := range ps {
		e := &ps[i]
		p.ids[e.Message.ID()] = e
		p.queue = append(p.queue, e)
		p.nextSeq = e.Seq + 1
	}
	return p, nil
}

// Submit judges each message on its own: content limit, UTF-8 and signature,
// then uniqueness of (sender, nonce) among pending and confirmed messages.
// The accepted ones are stamped and written in one synced batch; Submit
// returns once they are durable. errs[i] is nil for an accepted msgs[i].
// Concurrent calls share fsyncs.
func (p *Pool) Submit(msgs []chain.Message) (accepted []chain.Message, errs []error) {
	errs = make([]error, len(msgs))
	for i := range msgs {
		errs[i] = p.check(&msgs[i])
	}
	batch := p.reserve(msgs, errs)
	if len(batch) == 0 {
		return nil, errs
	}
	if err := p.store.AddPending(batch); err != nil {
		p.release(batch)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = fmt.Errorf("mempool: %w", err)
			}
		}
		return nil, errs
	}
	p.mu.Lock()
	for i := range batch {
		e := &batch[i]
		p.ids[e.Message.ID()] = e
		p.queue = append(p.queue, e)
	}
	p.mu.Unlock()
	accepted = make([]chain.Message, len(batch))
	for i := range batch {
		accepted[i] = batch[i].Message
	}
	return accepted, errs
}

func (p *Pool) check(m *chain.Message) error {
	if len(m.Content) > p.maxContent {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(m.Content), p.maxContent)
	}
	if err := m.Verify(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// reserve claims the IDs of the messages still without error, stamps them and
// gives them sequence numbers; a duplicate (also within msgs) gets ErrDuplicate.
func (p *Pool) reserve(msgs []chain.Message, errs []error) []store.Pending {
	var (
		batch []store.Pending
		from  []int // from[j]: the index in msgs of batch[j]
		ids   []chain.Hash
	)
	now := p.now()
	p.mu.Lock()
	for i := range msgs {
		if errs[i] != nil {
			continue
		}
		id := msgs[i].ID()
		if _, taken := p.ids[id]; taken {
			errs[i] = fmt.Errorf("%w: %s is pending", ErrDuplicate, id)
			continue
		}
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
	kept := batch[:0]
	var dropped []store.Pending
	for j, e := range batch {
		ok, err := p.store.HasMessage(ids[j])
		switch {
		case err != nil:
			errs[from[j]] = fmt.Errorf("mempool: %w", err)
			dropped = append(dropped, e)
		case ok:
			errs[from[j]] = fmt.Errorf("%w: %s is confirmed", ErrDuplicate, ids[j])
			dropped = append(dropped, e)
		default:
			kept = append(kept, e)
		}
	}
	p.release(dropped)
	return kept
}

func (p *Pool) release(batch []store.Pending) {
	p.mu.Lock()
	for i := range batch {
		delete(p.ids, batch[i].Message.ID())
	}
	p.mu.Unlock()
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
	}
	clear(p.queue[p.head : p.head+n])
	p.head += n
	if p.head > len(p.queue)/2 {
		p.queue = append(p.queue[:0:0], p.queue[p.head:]...)
		p.head = 0
	}
}
