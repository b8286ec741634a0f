package node

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A stop waits for the handlers still running before it closes the store:
// countRunning counts them, and drained says whether they are done within
// a grace period.
func TestRunningRequestsAreCounted(t *testing.T) {
	var n atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(countRunning(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }), &n))
	defer srv.Close()
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
	close(release)
	if !drained(&n, 5*time.Second) {
		t.Fatalf("not drained after the handler returned: %d running", n.Load())
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
