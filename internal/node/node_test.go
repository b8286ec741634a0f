package node

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countRunning counts the handlers running and drained says whether they
// are done within a grace period: what a stop asks before it closes the
// store (run leaves the store open when they are not).
func TestRunningRequestsAreCounted(t *testing.T) {
	var n atomic.Int64
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	srv := httptest.NewServer(countRunning(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }), &n))
	t.Cleanup(srv.Close)
	t.Cleanup(releaseOnce) // before srv.Close, which waits for the handler
	done := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Get(srv.URL)
		if err == nil {
			err = resp.Body.Close()
		}
		done <- err
	}()
	if !holdsWithin(5*time.Second, func() bool { return n.Load() == 1 }) {
		t.Fatalf("%d requests counted, want 1", n.Load())
	}
	if drained(&n, 30*time.Millisecond) {
		t.Fatal("drained with a handler still running")
	}
	releaseOnce()
	if !drained(&n, 5*time.Second) {
		t.Fatalf("not drained after the handler returned: %d running", n.Load())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
