package mempool

import (
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/store"
)

// Once Submit has returned, the pool keeps nothing of the request: its
// messages (and their content: a batch may hold 1000 of the largest) are
// not held by the waiting list's backing array until later submissions
// happen to overwrite the slot.
func TestFinishedRequestsAreNotRetained(t *testing.T) {
	st, err := store.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	p, err := Open(st, Options{MaxContent: 1 << 20, Now: func() uint64 { return 1 }})
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	big := strings.Repeat("x", 512<<10)
	if _, errs := p.Submit([]chain.Message{chain.SignMessage(key, 1, big), chain.SignMessage(key, 2, big)}); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	p.waitMu.Lock()
	defer p.waitMu.Unlock()
	for i, r := range p.waiting[:cap(p.waiting)] {
		if r != nil {
			t.Errorf("slot %d of the waiting list still holds a finished request of %d messages", i, len(r.msgs))
		}
	}
}
