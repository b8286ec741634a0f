package p2p

import (
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// connGater decides which connections the host makes and takes, and owns
// the host's source, the one peer whose messages it takes (AcceptFrom).
//
// Outgoing dials are refused unless the peer was passed to Host.Connect:
// the network rule that a node dials only addresses it was given, for any
// dial libp2p or pubsub might attempt on their own too, e.g. opening a
// stream to a peer that has just disconnected.
//
// Incoming connections are taken from anyone, unless the host is a
// follower (Config.Follower): then only from its source. A follower needs
// no one to dial it, and a stranger connected to it could send it a copy of
// the leader's block first: pubsub marks a message seen before the
// validator turns the stranger's copy away, and would then drop the
// leader's own copy as a duplicate.
type connGater struct {
	follower bool
	source   atomic.Pointer[peer.ID] // nil until AcceptFrom

	mu      sync.RWMutex
	allowed map[peer.ID]struct{}
}

func newConnGater(follower bool) *connGater {
	return &connGater{follower: follower, allowed: make(map[peer.ID]struct{})}
}

func (g *connGater) allow(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.allowed[p] = struct{}{}
}

// isSource reports whether p is the host's source.
func (g *connGater) isSource(p peer.ID) bool {
	src := g.source.Load()
	return src != nil && *src == p
}

func (g *connGater) InterceptPeerDial(p peer.ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	_, ok := g.allowed[p]
	return ok
}

func (g *connGater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool {
	return g.InterceptPeerDial(p)
}

func (g *connGater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured runs once the remote peer's ID is proven, for incoming
// and outgoing connections alike.
func (g *connGater) InterceptSecured(dir network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return dir != network.DirInbound || !g.follower || g.isSource(p)
}

func (g *connGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
