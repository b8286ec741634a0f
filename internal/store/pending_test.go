package store

import (
	"context"
	"slices"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
)

func seqs(ps []Pending) []uint64 {
	out := make([]uint64, len(ps))
	for i := range ps {
		out[i] = ps[i].Seq
	}
	return out
}

// Pending messages are kept in Seq order until the commit of the block that
// confirms them removes exactly those; a message not in the block stays.
func TestPendingMessageLifecycle(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	t.Cleanup(func() { _ = s.Close() }) // whichever store is open last
	bl := newBuilder()
	msgs := bl.messages(4)
	// Added in two batches and out of order; loaded in Seq order.
	if err := s.AddPending([]Pending{{Seq: 7, Message: msgs[2]}, {Seq: 2, Message: msgs[0]}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddPending([]Pending{{Seq: 5, Message: msgs[1]}, {Seq: 300, Message: msgs[3]}}); err != nil {
		t.Fatal(err)
	}
	ps, err := s.LoadPending()
	if err != nil {
		t.Fatal(err)
	}
	if got := seqs(ps); !slices.Equal(got, []uint64{2, 5, 7, 300}) {
		t.Fatalf("LoadPending seqs %v, want [2 5 7 300]", got)
	}
	for i, p := range ps {
		if p.Message != msgs[i] {
			t.Fatalf("pending %d: %+v, want %+v", p.Seq, p.Message, msgs[i])
		}
	}

	// Seal the first three; the fourth arrived after the sealer took its
	// batch and is not in the commit.
	sealed := msgs[:3]
	b := bl.seal(s.Tip(), sealed)
	if err := s.Commit(Commit{Blocks: []*chain.Block{b}, Messages: confirmedOf(b, sealed), Pending: []uint64{2, 5, 7}}); err != nil {
		t.Fatal(err)
	}
	ps, err = s.LoadPending()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Seq != 300 || ps[0].Message != msgs[3] {
		t.Fatalf("after the commit LoadPending = %+v, want only seq 300", ps)
	}
	for i, m := range sealed {
		c, err := s.Message(m.ID())
		if err != nil {
			t.Fatalf("Message(%s): %v", m.ID(), err)
		}
		if c.Height != b.Height || c.Index != uint32(i) || c.Message != m {
			t.Fatalf("confirmed %+v, want height %d index %d message %+v", c, b.Height, i, m)
		}
		if ok, err := s.HasMessage(m.ID()); !ok || err != nil {
			t.Fatalf("HasMessage = %v, %v", ok, err)
		}
	}
	if ok, err := s.HasMessage(msgs[3].ID()); ok || err != nil {
		t.Fatalf("HasMessage of the pending message = %v, %v; want false", ok, err)
	}
	_, err = s.Message(msgs[3].ID())
	notFound(t, "Message of a pending message", err)

	// The survivor is durable across a restart, and its commit empties the queue.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	ps, err = s.LoadPending()
	if err != nil || len(ps) != 1 || ps[0].Seq != 300 {
		t.Fatalf("after reopening LoadPending = %+v, %v; want seq 300", ps, err)
	}
	b2 := bl.seal(s.Tip(), msgs[3:])
	if err := s.Commit(Commit{Blocks: []*chain.Block{b2}, Messages: confirmedOf(b2, msgs[3:]), Pending: []uint64{300}}); err != nil {
		t.Fatal(err)
	}
	if ps, err := s.LoadPending(); err != nil || len(ps) != 0 {
		t.Fatalf("LoadPending = %+v, %v; want empty", ps, err)
	}
}

func TestAddPendingIsDurable(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	msgs := newBuilder().messages(3)
	if err := s.AddPending([]Pending{{Seq: 0, Message: msgs[0]}, {Seq: 1, Message: msgs[1]}, {Seq: 2, Message: msgs[2]}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	defer s.Close()
	ps, err := s.LoadPending()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 {
		t.Fatalf("%d pending after reopening, want 3", len(ps))
	}
	for i := range ps {
		if ps[i].Seq != uint64(i) || ps[i].Message != msgs[i] {
			t.Fatalf("pending %d = %+v", i, ps[i])
		}
	}
}

// HasMessages answers for every ID in one call, from the memtable and from
// flushed tables down to the bottom level (whose bloom filters it reads).
// TestHasMessages checks the uniqueness lookup in each state of the store:
// before the startup check has armed the ID filter (every ID goes to
// Pebble), after it, for blocks committed after it, after a restart, and
// without a filter (a peer's store).
func TestHasMessages(t *testing.T) {
	s, dir := newStore(t)
	s.FilterMessageIDs()
	bl := newBuilder()
	var stored []chain.Message
	for range 3 {
		_, msgs := bl.extend(t, s, 4)
		stored = append(stored, msgs...)
		// Push what is stored so far out of the memtable and down the levels.
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Compact(context.Background(), []byte("msg:"), prefixEnd(msgPrefix), false); err != nil {
			t.Fatal(err)
		}
	}
	_, last := bl.extend(t, s, 2)
	stored = append(stored, last...) // these two only in the memtable
	absent := bl.messages(5)
	wantHas(t, s, "unarmed", stored, absent)

	wantIntact(t, s, 5)
	wantHas(t, s, "armed by VerifyChain", stored, absent)

	_, more := bl.extend(t, s, 3)
	stored = append(stored, more...)
	absent = bl.messages(5)
	wantHas(t, s, "committed after arming", stored, absent)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	s.FilterMessageIDs()
	wantHas(t, s, "reopened, unarmed", stored, absent)
	wantIntact(t, s, 6)
	wantHas(t, s, "reopened and armed", stored, absent)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, dir)
	defer s.Close()
	wantIntact(t, s, 6)
	wantHas(t, s, "no filter", stored, absent)

	if got, err := s.HasMessages(nil); err != nil || len(got) != 0 {
		t.Fatalf("HasMessages(nil) = %v, %v", got, err)
	}
}

// wantHas asks HasMessages about stored and absent messages interleaved and
// wants exactly the stored ones reported.
func wantHas(t *testing.T, s *Store, state string, stored, absent []chain.Message) {
	t.Helper()
	var ids []chain.Hash
	var want []bool
	for i := range max(len(stored), len(absent)) {
		if i < len(absent) {
			ids, want = append(ids, absent[i].ID()), append(want, false)
		}
		if i < len(stored) {
			ids, want = append(ids, stored[i].ID()), append(want, true)
		}
	}
	got, err := s.HasMessages(ids)
	if err != nil {
		t.Fatalf("%s: %v", state, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: HasMessages = %v, want %v", state, got, want)
	}
}
