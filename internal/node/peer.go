package node

import (
	"context"
	"errors"
	"net/http"

	"github.com/kimura-ledger/kimura/internal/p2p"
	"github.com/kimura-ledger/kimura/internal/store"
)

type peer struct{}

func newPeer(_ context.Context, _ *Config, _ *store.Store) (*peer, error) {
	return nil, errors.New("node: peer role not built yet")
}

func (p *peer) handler(*p2p.Host) http.Handler       { return nil }
func (p *peer) run(context.Context, *p2p.Host) error { return nil }
