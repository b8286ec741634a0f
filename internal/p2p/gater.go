package p2p

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// dialGater enforces the network rule that a node dials only addresses it
// was given: outgoing dials are refused unless the peer was passed to
// Host.Connect. That covers any dial libp2p or pubsub might attempt on their
// own, e.g. opening a stream to a peer that has just disconnected. Inbound
// connections are always accepted.
type dialGater struct {
	mu      sync.RWMutex
	allowed map[peer.ID]struct{}
}

func newDialGater() *dialGater {
	return &dialGater{allowed: make(map[peer.ID]struct{})}
}

func (g *dialGater) allow(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.allowed[p] = struct{}{}
}

func (g *dialGater) InterceptPeerDial(p peer.ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	_, ok := g.allowed[p]
	return ok
}

func (g *dialGater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool {
	return g.InterceptPeerDial(p)
}

func (g *dialGater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

func (g *dialGater) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}

func (g *dialGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
