package api_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/mempool"
	"github.com/kimura-ledger/kimura/internal/store"
)

// benchLeader is a leader's submission path over a real store and pool.
func benchLeader(b *testing.B) http.Handler {
	st, err := store.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	pool, err := mempool.Open(st, mempool.Options{MaxContent: 64 << 10, Now: func() uint64 { return 1 }})
	if err != nil {
		b.Fatal(err)
	}
	return api.NewServer(api.Config{Chain: nil, Submitter: pool, MaxContent: 64 << 10})
}

// BenchmarkSubmitHandler is the leader's whole server-side cost of one POST
// /message, without the network: JSON, signature, duplicate check and the
// synced pending write, with concurrent callers combined as in production.
func BenchmarkSubmitHandler(b *testing.B) {
	h := benchLeader(b)
	_, key, _ := ed25519.GenerateKey(nil)
	content := string(bytes.Repeat([]byte("x"), 100))
	bodies := make([][]byte, b.N)
	for i := range bodies {
		m := chain.SignMessage(key, uint64(i), content)
		bodies[i], _ = json.Marshal(api.NewSubmission(&m))
	}
	postAll(b, h, "/message", bodies, 32, http.StatusAccepted)
}

// BenchmarkSubmitBatchHandler is the leader's server-side cost of POST
// /messages with 1,000 messages; ns/msg is the figure to read.
func BenchmarkSubmitBatchHandler(b *testing.B) {
	h := benchLeader(b)
	keys := make([]ed25519.PrivateKey, 8)
	for i := range keys {
		_, keys[i], _ = ed25519.GenerateKey(nil)
	}
	content := string(bytes.Repeat([]byte("x"), 100))
	const n = 1000
	bodies := make([][]byte, b.N)
	for i := range bodies {
		req := struct {
			Messages []api.Submission `json:"messages"`
		}{}
		for j := range n {
			m := chain.SignMessage(keys[j%len(keys)], uint64(i*n+j), content)
			req.Messages = append(req.Messages, api.NewSubmission(&m))
		}
		bodies[i], _ = json.Marshal(req)
	}
	postAll(b, h, "/messages", bodies, 4, http.StatusOK)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
}

// postAll times POSTing each of bodies to path from parallelism×GOMAXPROCS
// goroutines, each answer expected with status want.
func postAll(b *testing.B, h http.Handler, path string, bodies [][]byte, parallelism, want int) {
	var next atomic.Int64
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(bodies[i])))
			if w.Code != want {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}
