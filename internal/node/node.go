package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/p2p"
	"github.com/kimura-ledger/kimura/internal/store"
)

// ErrWrongProducer is returned when the stored chain was produced by another
// key than the one a leader would sign with.
var ErrWrongProducer = errors.New("node: chain was produced by another key")

// Run starts a node as cfg describes, serves until ctx is done, then stops
// gracefully within ShutdownTimeout. It returns nil after a graceful stop; a
// *store.CorruptionError when the integrity check fails (nothing was
// served); another error for any other fatal problem.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	served, err := run(ctx, &cfg)
	if !served && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// Stopped by a signal during start-up (e.g. in a long integrity
		// check): a graceful stop, with nothing to undo.
		served, err = true, nil
	}
	if served {
		cfg.Log.Info("Shutdown complete")
	}
	return err
}

// run starts, serves and stops the node; served says whether it got as far
// as serving, so that Run logs the end of a shutdown after every close.
func run(ctx context.Context, cfg *Config) (served bool, _ error) {
	log := cfg.Log
	if err := os.MkdirAll(cfg.DBPath, 0o755); err != nil {
		return false, fmt.Errorf("node: create data directory: %w", err)
	}
	opened := time.Now()
	st, err := store.Open(cfg.chainDir(), log)
	if err != nil {
		return false, err
	}
	log.Info("Store opened", "path", cfg.chainDir(), "took", time.Since(opened).Round(time.Millisecond))
	if cfg.Leader {
		st.FilterMessageIDs() // the leader judges uniqueness; the scan below fills the filter
	}
	keepStore := false // set when requests outlive the HTTP server's shutdown
	defer func() {
		if keepStore {
			return
		}
		if err := st.Close(); err != nil {
			log.Error("closing store", "err", err)
		}
	}()

	start := time.Now()
	n, err := st.VerifyChain(ctx, func(p store.Progress) {
		log.Info(fmt.Sprintf("Verifying chain: %d of %d blocks", p.Done, p.Total), "elapsed", p.Elapsed.Round(time.Millisecond))
	})
	if err != nil {
		return false, err
	}
	log.Info(fmt.Sprintf("Chain integrity verified: %d blocks", n), "took", time.Since(start).Round(time.Millisecond))

	key, err := p2p.LoadOrCreateKey(cfg.keyPath())
	if err != nil {
		return false, fmt.Errorf("node: %w", err)
	}

	var role roleRunner
	if cfg.Leader {
		role, err = newLeader(cfg, st, key)
	} else {
		role = newPeer(cfg, st)
	}
	if err != nil {
		return false, err
	}

	host, err := p2p.New(ctx, p2p.Config{Key: key, ListenAddr: cfg.ListenAddr, MaxMessageSize: gossipLimit, Follower: !cfg.Leader, Logger: log})
	if err != nil {
		return false, fmt.Errorf("node: start p2p: %w", err)
	}
	defer func() {
		if err := host.Close(); err != nil {
			log.Error("closing p2p host", "err", err)
		}
	}()

	ln, err := net.Listen("tcp", cfg.RPCAddr)
	if err != nil {
		return false, fmt.Errorf("node: listen on %s: %w", cfg.RPCAddr, err)
	}
	var handlers atomic.Int64 // HTTP handlers running: the store must outlive them
	apiSrv := role.handler(host)
	srv := &http.Server{
		Handler:           countRunning(apiSrv, &handlers),
		ReadHeaderTimeout: 10 * time.Second,
		// Bodies are paced by the API itself (api.MinBodyRate); an idle
		// keep-alive connection is closed after this.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	log.Info("Serving HTTP API", "addr", ln.Addr().String(), "peer_id", host.PeerID(), "p2p_addrs", host.Addrs())

	// From here on, every goroutine stops when runCtx is done.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	fatal := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fatal <- fmt.Errorf("node: HTTP server: %w", err)
		}
	}()
	roleDone := make(chan struct{})
	go func() {
		defer close(roleDone)
		if err := role.run(runCtx, host); err != nil {
			fatal <- err
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("Shutting down")
	case runErr = <-fatal:
		log.Error("fatal error, shutting down", "err", runErr)
	}

	// Stop in reverse: intake first, then the role (the block in hand is
	// finished), then the network and the store (deferred above).
	shutCtx, shutCancel := context.WithTimeout(context.Background(), ShutdownTimeout-time.Second)
	defer shutCancel()
	// Requests waiting for a slot are answered at once: judging a queue of
	// large batches could outlast the grace.
	apiSrv.StopIntake()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn("HTTP shutdown", "err", err)
		// Close ends the connections, not the API's own requests to the
		// leader: Stop ends those (503), and their answers get a moment
		// to be written before the connections close.
		apiSrv.Stop()
		drained(&handlers, stopAnswerGrace)
		_ = srv.Close()
	}
	apiSrv.Stop() // after a graceful stop, only idle connections to close
	wg.Wait()
	cancel()
	<-roleDone
	role.stop()
	// Close does not wait for handlers; one still running when the store is
	// closed would crash on it. Every acknowledged write is synced already,
	// so leaving the store for the process's exit to release loses nothing.
	if !drained(&handlers, handlerGrace) {
		log.Error("requests still running after the HTTP server stopped; leaving the store open", "requests", handlers.Load())
		keepStore = true
	}
	return true, runErr
}

// stopAnswerGrace is how long the handlers Stop ended have to write their
// 503 before the connections are closed.
const stopAnswerGrace = 200 * time.Millisecond

// handlerGrace is how long a stop waits for handlers that outlived the HTTP
// server's shutdown (their connections closed under them) to return.
const handlerGrace = 500 * time.Millisecond

// countRunning counts the requests h is serving in n.
func countRunning(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		defer n.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// drained reports whether n is zero, or comes to zero within grace.
func drained(n *atomic.Int64, grace time.Duration) bool {
	return holdsWithin(grace, func() bool { return n.Load() == 0 })
}

// holdsWithin polls cond until it holds (true) or d has passed (false).
func holdsWithin(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// roleRunner is what differs between a leader and a peer.
type roleRunner interface {
	// handler returns the HTTP API of this role.
	handler(host *p2p.Host) *api.Server
	// run does the role's work until ctx is done, then returns nil having
	// finished what it had in hand.
	run(ctx context.Context, host *p2p.Host) error
	// stop releases what the role holds besides the store and the host,
	// once run has returned and the HTTP server has stopped.
	stop()
}

// health fills in what every role reports the same way.
func health(role string, st *store.Store, host *p2p.Host, pending int) api.Health {
	t := st.Tip()
	addrs := host.Addrs()
	if addrs == nil {
		addrs = []string{}
	}
	return api.Health{
		Status: "ok", Role: role, Height: t.Height, Hash: t.Hash,
		GenesisHash: chain.GenesisHash, PeerID: host.PeerID(), P2PAddrs: addrs, Pending: pending,
	}
}

// confirmedView returns the JSON form of a stored confirmed message with its
// inclusion proof, after checking it against its block so that a damaged
// message record is never served.
func confirmedView(st *store.Store, c store.Confirmed) (api.Message, error) {
	b, err := st.Block(c.Height)
	if err != nil {
		return api.Message{}, fmt.Errorf("node: block %d of message %s: %w", c.Height, c.Message.ID(), err)
	}
	return viewIn(b, c, chain.NewTree(b.Entries))
}

// viewIn is confirmedView for a block and tree the caller already has.
func viewIn(b *chain.Block, c store.Confirmed, t *chain.Tree) (api.Message, error) {
	if int(c.Index) >= len(b.Entries) || chain.EntryOf(&c.Message) != b.Entries[c.Index] {
		return api.Message{}, fmt.Errorf("node: stored message %s does not match block %d", c.Message.ID(), c.Height)
	}
	proof, err := t.Proof(int(c.Index))
	if err != nil {
		return api.Message{}, err
	}
	v := api.NewMessage(&c.Message)
	v.Confirm(c.Height, c.Index, proof)
	return v, nil
}
