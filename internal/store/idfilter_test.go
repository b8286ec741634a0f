package store

import (
	"crypto/rand"
	"sync"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// randomBlocks returns n blocks of per random message IDs each.
func randomBlocks(n, per int) []*chain.Block {
	bs := make([]*chain.Block, n)
	for i := range bs {
		bs[i] = &chain.Block{Entries: make([]chain.Entry, per)}
		for j := range bs[i].Entries {
			rand.Read(bs[i].Entries[j].ID[:])
		}
	}
	return bs
}

func TestIDFilterUnarmedSaysMaybe(t *testing.T) {
	f := newIDFilter(1000)
	var id chain.Hash
	rand.Read(id[:])
	if !f.mayContain(&id) {
		t.Fatal("an unarmed filter ruled out an ID; it must send every ID to the database")
	}
	f.arm()
	if f.mayContain(&id) {
		t.Fatal("an empty armed filter did not rule out an ID")
	}
}

// A part counts the IDs it holds, those of the block that made the filter
// grow included, so it grows again once it holds its capacity, not a
// block's worth later (a fuller part answers "maybe" more often).
func TestIDFilterCountsTheBlockThatGrewIt(t *testing.T) {
	f := newIDFilter(10)
	for i, b := range randomBlocks(4, 8) {
		f.addBlock(b)
		want := []int{1, 2, 2, 3}[i] // parts of 10, 20, 40 IDs: 8; 16 → grow; 16 of 20; 24 → grow
		if got := len(*f.parts.Load()); got != want {
			t.Fatalf("after %d blocks of 8 IDs: %d parts, want %d", i+1, got, want)
		}
	}
}

// TestIDFilterGrowsWithoutFalseNegatives adds ten times the first part's
// capacity from several goroutines at once, as the startup scan does, and
// wants every ID still found and the false-positive rate near its design.
func TestIDFilterGrowsWithoutFalseNegatives(t *testing.T) {
	f := newIDFilter(2000)
	bs := randomBlocks(2000, 10)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(bs); i += 4 {
				f.addBlock(bs[i])
			}
		})
	}
	wg.Wait()
	f.arm()
	if parts := len(*f.parts.Load()); parts < 3 {
		t.Fatalf("%d parts after 10× the first capacity; the filter did not grow", parts)
	}
	for _, b := range bs {
		for _, e := range b.Entries {
			if !f.mayContain(&e.ID) {
				t.Fatalf("added ID %s ruled out", e.ID)
			}
		}
	}
	fp := 0
	const lookups = 100_000
	for _, b := range randomBlocks(lookups/10, 10) {
		for _, e := range b.Entries {
			if f.mayContain(&e.ID) {
				fp++
			}
		}
	}
	// About 1% per part, and a lookup asks each part.
	if rate := float64(fp) / lookups; rate > 0.05 {
		t.Fatalf("false-positive rate %.3f, want about 0.01–0.03", rate)
	}
}

// TestIDFilterConcurrentAddAndLookup runs lookups while blocks are added
// and the filter grows (meant for -race): an ID added before a lookup
// started is always found.
func TestIDFilterConcurrentAddAndLookup(t *testing.T) {
	f := newIDFilter(100)
	f.arm()
	bs := randomBlocks(500, 4)
	done := make(chan int, len(bs))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i, b := range bs {
			f.addBlock(b)
			done <- i
		}
		close(done)
	})
	wg.Go(func() {
		for i := range done {
			for _, e := range bs[i].Entries {
				if !f.mayContain(&e.ID) {
					t.Errorf("block %d: added ID ruled out", i)
					return
				}
			}
		}
	})
	wg.Wait()
}
