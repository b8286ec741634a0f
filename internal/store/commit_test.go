package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// A commit is all or nothing: when it fails after the whole batch is
// assembled, nothing of it is visible, before or after a restart; when it
// succeeds, all of it is.
func TestAtomicWriteAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	t.Cleanup(func() { _ = s.Close() }) // whichever store is open last
	blocks, bl := buildChain(t, s, 2, 0, 1)
	before := s.Tip()

	msgs := bl.messages(3)
	pending := []Pending{{Seq: 10, Message: msgs[0]}, {Seq: 11, Message: msgs[1]}, {Seq: 12, Message: msgs[2]}}
	if err := s.AddPending(pending); err != nil {
		t.Fatal(err)
	}
	b := bl.seal(before, msgs)
	c := Commit{Blocks: []*chain.Block{b}, Messages: confirmedOf(b, msgs), Pending: []uint64{10, 11, 12}}

	// nothingVisible checks every part of c is absent and the old state whole.
	nothingVisible := func(stage string) {
		t.Helper()
		if got := s.Tip(); got != before {
			t.Errorf("%s: tip %d %s, want %d %s", stage, got.Height, got.Hash, before.Height, before.Hash)
		}
		_, err := s.Block(b.Height)
		notFound(t, stage+": Block", err)
		_, err = s.BlockRecord(b.Height)
		notFound(t, stage+": BlockRecord", err)
		for _, m := range msgs {
			_, err := s.Message(m.ID())
			notFound(t, stage+": Message", err)
		}
		ps, err := s.LoadPending()
		if err != nil || len(ps) != 3 {
			t.Errorf("%s: LoadPending = %d messages, %v; want all 3", stage, len(ps), err)
		}
		last, lastHash, err := s.metaTip()
		if err != nil || last != before.Height || lastHash != before.Hash {
			t.Errorf("%s: meta tip %d %s, %v; want %d %s", stage, last, lastHash, err, before.Height, before.Hash)
		}
	}

	injected := errors.New("injected failure before apply")
	calls := 0
	s.beforeApply = func(*pebble.Batch) error { calls++; return injected }
	if err := s.Commit(c); !errors.Is(err, injected) {
		t.Fatalf("Commit = %v, want the injected error", err)
	}
	if calls != 1 {
		t.Fatalf("beforeApply called %d times, want once", calls)
	}
	nothingVisible("after the failed commit")
	wantIntact(t, s, uint64(len(blocks)))

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	nothingVisible("after reopening")
	wantIntact(t, s, uint64(len(blocks)))

	// The hook also sees the moment just before Apply: the batch is whole
	// and still nothing of it is visible. Then all of it appears at once.
	s.beforeApply = func(*pebble.Batch) error { nothingVisible("just before apply"); return nil }
	if err := s.Commit(c); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	s.beforeApply = nil
	allVisible := func(stage string) {
		t.Helper()
		if tip := s.Tip(); tip.Height != b.Height || tip.Hash != b.Hash() || tip.Header != b.Header {
			t.Errorf("%s: tip %+v, want block %d", stage, tip, b.Height)
		}
		got, err := s.Block(b.Height)
		if err != nil || got.Hash() != b.Hash() {
			t.Errorf("%s: Block = %v, %v", stage, got, err)
		}
		rec, err := s.BlockRecord(b.Height)
		if err != nil || !bytes.Equal(rec, b.Encode()) {
			t.Errorf("%s: BlockRecord = %x, %v", stage, rec, err)
		}
		for i, m := range msgs {
			cm, err := s.Message(m.ID())
			if err != nil || cm.Height != b.Height || cm.Index != uint32(i) || cm.Message != m {
				t.Errorf("%s: Message %d = %+v, %v", stage, i, cm, err)
			}
		}
		if ps, err := s.LoadPending(); err != nil || len(ps) != 0 {
			t.Errorf("%s: LoadPending = %+v, %v; want empty", stage, ps, err)
		}
		wantIntact(t, s, b.Height+1)
	}
	allVisible("after the commit")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, dir)
	allVisible("after reopening")
}

func TestCommitRefusesBlocksNotExtendingTip(t *testing.T) {
	s, _ := newStore(t)
	_, bl := buildChain(t, s, 1, 1)
	tip := s.Tip()
	good := bl.seal(tip, bl.messages(1))
	other := chain.Seal(&tip.Header, nil, good.Timestamp, testKey(9))

	skip := bl.seal(Tip{Header: good.Header}, nil) // height tip+2
	wrongParent := *good
	wrongParent.PrevHash[0] ^= 1
	stale := bl.seal(Tip{Header: *mustHeader(t, s, tip.Height-1)}, nil) // height tip, already taken

	cases := map[string][]*chain.Block{
		"height gap":             {skip},
		"wrong prev_hash":        {&wrongParent},
		"height already taken":   {stale},
		"second does not follow": {good, chain.Seal(&other.Header, nil, other.Timestamp, producerKey)},
		"second repeats height":  {good, good},
	}
	for name, blocks := range cases {
		err := s.Commit(Commit{Blocks: blocks})
		if !errors.Is(err, ErrNotNext) {
			t.Errorf("%s: Commit = %v, want ErrNotNext", name, err)
		}
		if s.Tip() != tip {
			t.Fatalf("%s: tip moved to %d", name, s.Tip().Height)
		}
		_, err = s.Block(tip.Height + 1)
		notFound(t, name+": Block above the tip", err)
	}
	if err := s.Commit(Commit{}); err == nil {
		t.Error("Commit without blocks succeeded")
	}

	// Several consecutive blocks commit together.
	next := bl.seal(Tip{Header: good.Header}, bl.messages(2))
	if err := s.Commit(Commit{Blocks: []*chain.Block{good, next}}); err != nil {
		t.Fatalf("two consecutive blocks: %v", err)
	}
	if got := s.Tip(); got.Height != next.Height || got.Hash != next.Hash() {
		t.Fatalf("tip %d %s, want %d %s", got.Height, got.Hash, next.Height, next.Hash())
	}
	wantIntact(t, s, next.Height+1)
}

func mustHeader(t *testing.T, s *Store, h uint64) *chain.Header {
	t.Helper()
	b, err := s.Block(h)
	if err != nil {
		t.Fatal(err)
	}
	return &b.Header
}

func TestBlockRecords(t *testing.T) {
	s, _ := newStore(t)
	blocks, bl := buildChain(t, s, 1, 0, 3, 2, 0)
	tip := s.Tip().Height // 5
	// A record stored beyond the tip (not committed) is never served.
	beyond := bl.seal(s.Tip(), nil)
	setRaw(t, s, blockKey(beyond.Height), storedBlock(beyond.Encode()))

	for _, c := range []struct {
		from       uint64
		limit      int
		start, end uint64 // the records [start, end) expected
	}{
		{0, 3, 0, 3},
		{0, 100, 0, tip + 1},
		{2, 2, 2, 4},
		{3, 100, 3, tip + 1},
		{tip, 1, tip, tip + 1},
		{tip + 1, 10, 0, 0},
		{tip + 100, 10, 0, 0},
		{1, 0, 0, 0},
		{1, -1, 0, 0},
	} {
		recs, err := s.BlockRecords(c.from, c.limit, 1<<30)
		if err != nil {
			t.Fatalf("BlockRecords(%d, %d): %v", c.from, c.limit, err)
		}
		if len(recs) != int(c.end-c.start) {
			t.Fatalf("BlockRecords(%d, %d): %d records, want %d", c.from, c.limit, len(recs), c.end-c.start)
		}
		for i, rec := range recs {
			if want := blocks[c.start+uint64(i)].Encode(); !bytes.Equal(rec, want) {
				t.Fatalf("BlockRecords(%d, %d)[%d] is not block %d", c.from, c.limit, i, c.start+uint64(i))
			}
		}
	}
	// The byte budget: whole records while they fit, and always the first.
	size := func(from, to uint64) (n int) {
		for h := from; h < to; h++ {
			n += len(blocks[h].Encode())
		}
		return n
	}
	for _, c := range []struct {
		from     uint64
		maxBytes int
		end      uint64
	}{
		{0, size(0, 3), 3},
		{0, size(0, 3) + 1, 3},
		{0, size(0, 3) - 1, 2},
		{1, size(1, tip+1), tip + 1},
		{2, 1, 3},
		{2, 0, 3},
	} {
		recs, err := s.BlockRecords(c.from, 100, c.maxBytes)
		if err != nil || len(recs) != int(c.end-c.from) {
			t.Fatalf("BlockRecords(%d, 100, %d bytes): %d records, %v; want %d", c.from, c.maxBytes, len(recs), err, c.end-c.from)
		}
	}
	_, err := s.BlockRecord(beyond.Height)
	notFound(t, "BlockRecord beyond the tip", err)
	if rec, err := s.BlockRecord(3); err != nil || !bytes.Equal(rec, blocks[3].Encode()) {
		t.Fatalf("BlockRecord(3) = %x, %v", rec, err)
	}
}

// The data directory follows SPEC's on-disk schema, read here with Pebble
// directly and default options.
func TestOnDiskSchema(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	blocks, bl := buildChain(t, s, 2)
	msgs := bl.messages(1)
	if err := s.AddPending([]Pending{{Seq: 1, Message: msgs[0]}}); err != nil {
		t.Fatal(err)
	}
	confirmed, err := s.Message(blocks[1].MessageIDs()[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := pebble.Open(dir, quietDefaults())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	get := func(key []byte) []byte {
		t.Helper()
		v, closer, err := db.Get(key)
		if err != nil {
			t.Fatalf("get %q: %v", key, err)
		}
		defer closer.Close()
		return bytes.Clone(v)
	}
	be := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

	if got := get([]byte("meta:last_height")); !bytes.Equal(got, be(1)) {
		t.Errorf("meta:last_height = %x, want %x", got, be(1))
	}
	tipHash := blocks[1].Hash()
	if got := get([]byte("meta:last_hash")); !bytes.Equal(got, tipHash[:]) {
		t.Errorf("meta:last_hash = %x, want %s", got, blocks[1].Hash())
	}
	if got := get([]byte("meta:genesis_hash")); !bytes.Equal(got, chain.GenesisHash[:]) {
		t.Errorf("meta:genesis_hash = %x", got)
	}
	for h, b := range blocks {
		rec := b.Encode()
		want := binary.BigEndian.AppendUint32(bytes.Clone(rec), crc32.Checksum(rec, crc32.MakeTable(crc32.Castagnoli)))
		if got := get(append([]byte("block:"), be(uint64(h))...)); !bytes.Equal(got, want) {
			t.Errorf("block:%d is not the block record and its CRC-32C", h)
		}
	}
	id := confirmed.Message.ID()
	want := append(append(be(1), 0, 0, 0, 1), confirmed.Message.Encode()...)
	if got := get(append([]byte("msg:"), id[:]...)); !bytes.Equal(got, want) {
		t.Errorf("msg:%s = %x, want height || index || message %x", id, got, want)
	}
	if got := get(append([]byte("pending:"), be(1)...)); !bytes.Equal(got, msgs[0].Encode()) {
		t.Errorf("pending:1 = %x, want the message encoding", got)
	}
}

// Closing twice is harmless: the second Close returns the first's answer
// and the directory lock is free for the next node.
func TestCloseTwice(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, dir)
	if err := s.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s = mustOpen(t, dir)
	if err := s.Close(); err != nil {
		t.Fatalf("Close after reopening: %v", err)
	}
}

// A block damaged after the startup check is still never served: every read
// of a block checks its checksum and names the height.
func TestReadsRefuseDamagedBlock(t *testing.T) {
	s, _ := newStore(t)
	blocks, _ := buildChain(t, s, 2, 3, 1)
	v := storedBlock(blocks[2].Encode())
	v[len(v)/2] ^= 0x01
	setRaw(t, s, blockKey(2), v)

	check := func(what string, err error) {
		t.Helper()
		if ce, ok := IsCorruption(err); !ok || ce.Height != 2 {
			t.Errorf("%s: %v, want corruption at height 2", what, err)
		}
	}
	_, err := s.Block(2)
	check("Block", err)
	_, err = s.BlockRecord(2)
	check("BlockRecord", err)
	_, err = s.BlockRecords(1, 3, 1<<30)
	check("BlockRecords", err)
	if recs, err := s.BlockRecords(3, 1, 1<<30); err != nil || len(recs) != 1 || !bytes.Equal(recs[0], blocks[3].Encode()) {
		t.Errorf("BlockRecords past the damage = %d records, %v", len(recs), err)
	}
}

// The size estimates of AddPending's and Commit's batches cover all they
// write, with the room Pebble reserves for an entry before it writes it
// (entryOverhead, of which the entry's kind and length varints take at
// least 3), so that a batch made with that size never doubles and copies
// its buffer for its last entries: an empty block, one message, and a
// thousand with their pending entries.
func TestBatchesSizedUpFront(t *testing.T) {
	need := func(b *pebble.Batch) int {
		if b.Empty() {
			return len(b.Repr())
		}
		return len(b.Repr()) + entryOverhead - 3
	}
	s, _ := newStore(t)
	buildChain(t, s)
	bl := newBuilder()
	for _, n := range []int{0, 1, 1000} {
		msgs := bl.messages(n)
		ps := make([]Pending, n)
		seqs := make([]uint64, n)
		for i := range msgs {
			ps[i] = Pending{Seq: uint64(i), Message: msgs[i]}
			seqs[i] = ps[i].Seq
		}
		pb, err := s.pendingBatch(ps)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := need(pb), pendingSize(ps); got > want {
			t.Errorf("%d pending: a batch needing %d bytes, sized for %d", n, got, want)
		}
		if err := s.db.Apply(pb, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		_ = pb.Close()
		b := bl.seal(s.Tip(), msgs)
		c := Commit{Blocks: []*chain.Block{b}, Messages: confirmedOf(b, msgs), Pending: seqs}
		s.beforeApply = func(batch *pebble.Batch) error {
			if got, want := need(batch), commitSize(&c); got > want {
				t.Errorf("block of %d: a batch needing %d bytes, sized for %d", n, got, want)
			}
			return nil
		}
		if err := s.Commit(c); err != nil {
			t.Fatal(err)
		}
	}
}
