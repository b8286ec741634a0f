package bench

// This file is the one place outside internal/store that imports Pebble
// (STYLE: confine each big dependency to one package). It is a yardstick,
// not a store: the bare endpoint is what a durable acknowledgement costs on
// this machine with nothing of Kimura in it.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
)

// Bare is the bare durable endpoint: an HTTP server on 127.0.0.1 whose
// POST /message decodes the same JSON body as a node, writes the message
// with one synced Pebble commit and answers 202, and whose POST /messages
// does the same for a batch with one synced commit. It verifies nothing:
// no signature, no uniqueness. Pebble runs with its default options, as in
// the issue's reference handler ("a bare Go HTTP handler that commits one
// key to Pebble with pebble.Sync per request"), not with the node store's
// tuned ones (12 MiB memtables, a 32 MiB cache, L0 thresholds of 8 and 32,
// bloom filters: see internal/store's pebbleOptions). Pebble's commit
// pipeline groups concurrent synced commits into one fsync whatever the
// options, so concurrent requests share fsyncs as the node's do.
type Bare struct {
	URL string
	db  *pebble.DB
	srv *http.Server
	ln  net.Listener
}

// StartBare opens a Pebble database in dir and serves on addr (host:port,
// 127.0.0.1:0 when empty).
func StartBare(dir, addr string) (*Bare, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		return nil, fmt.Errorf("bench: bare endpoint: open pebble: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("bench: bare endpoint: %w", err)
	}
	b := &Bare{URL: "http://" + ln.Addr().String(), db: db, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /message", b.one)
	mux.HandleFunc("POST /messages", b.many)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeBareJSON(w, http.StatusOK, map[string]string{"status": "ok", "role": "bare"})
	})
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

// Close stops the server and closes the database.
func (b *Bare) Close() error {
	err := b.srv.Close()
	return errors.Join(err, b.db.Close())
}

func (b *Bare) one(w http.ResponseWriter, r *http.Request) {
	var sub api.Submission
	if !readJSON(w, r, &sub) {
		return
	}
	m, err := sub.ToChain()
	if err != nil {
		bareError(w, http.StatusBadRequest, err)
		return
	}
	m.Timestamp = uint64(time.Now().UnixMilli())
	if err := b.db.Set(bareKey(&m), m.Encode(), pebble.Sync); err != nil {
		bareError(w, http.StatusInternalServerError, err)
		return
	}
	writeBareJSON(w, http.StatusAccepted, api.Accepted{ID: m.ID(), Status: api.StatusPending})
}

func (b *Bare) many(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []api.Submission `json:"messages"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	batch := b.db.NewBatch()
	defer batch.Close()
	results := make([]api.Result, len(req.Messages))
	now := uint64(time.Now().UnixMilli())
	ids := make([]chain.Hash, 0, len(req.Messages))
	for i := range req.Messages {
		m, err := req.Messages[i].ToChain()
		if err != nil {
			results[i] = api.Result{Error: err.Error(), Code: http.StatusBadRequest}
			continue
		}
		m.Timestamp = now
		if err := batch.Set(bareKey(&m), m.Encode(), nil); err != nil {
			bareError(w, http.StatusInternalServerError, err)
			return
		}
		ids = append(ids, m.ID())
		results[i] = api.Result{ID: &ids[len(ids)-1], Status: api.StatusPending}
	}
	if err := b.db.Apply(batch, pebble.Sync); err != nil {
		bareError(w, http.StatusInternalServerError, err)
		return
	}
	writeBareJSON(w, http.StatusOK, struct {
		Results []api.Result `json:"results"`
	}{results})
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<20))
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		bareError(w, http.StatusBadRequest, err)
		return false
	}
	return true
}

func bareError(w http.ResponseWriter, code int, err error) {
	writeBareJSON(w, code, map[string]string{"error": err.Error()})
}

func writeBareJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// quietPebble drops Pebble's informational logging; errors still surface
// as errors from its calls.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("bench: bare endpoint: pebble: "+format, args...))
}

// BareChildEnv, set to "1" in its environment, makes the kimura-bench
// executable (or its test binary) run BareMain instead of itself: the bare
// endpoint runs in a process of its own, as a node does, so that it competes
// with the load generator for the cores on the same terms.
const BareChildEnv = "KIMURA_BENCH_BARE_CHILD"

// BareMain serves the bare endpoint until SIGINT or SIGTERM. It takes the
// node's --rpc-addr and --db-path (and ignores --listen-addr), and logs
// "Serving HTTP API" addr=... as a node does. It returns the exit code.
func BareMain(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("bare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("rpc-addr", "127.0.0.1:0", "HTTP address")
	dir := fs.String("db-path", "", "data directory")
	fs.String("listen-addr", "", "ignored")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := StartBare(*dir, *addr)
	if err != nil {
		log.Error("bare endpoint", "err", err)
		return 1
	}
	log.Info("Serving HTTP API", "addr", b.ln.Addr().String())
	<-ctx.Done()
	if err := b.Close(); err != nil {
		log.Error("bare endpoint", "err", err)
		return 1
	}
	log.Info("Shutdown complete")
	return 0
}
