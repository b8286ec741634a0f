package bench

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A request in flight ends soon after its context is done, although
// fasthttp's client takes no context and the server never answers: an
// interrupt must not wait out requestTimeout. After that the submitter
// sends nothing more.
func TestSubmitterEndsRequestsOnCancel(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	ctx, cancel := context.WithCancel(t.Context())
	sub, err := newSubmitter(ctx, srv.URL, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.close()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := sub.post(ctx, "/message", []byte(`{}`), 1)
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for arrived.Load() < 4 { // all four in flight, at the server
		if time.Now().After(deadline) {
			t.Fatalf("%d of 4 requests reached the server", arrived.Load())
		}
		time.Sleep(time.Millisecond)
	}
	cancelled := time.Now()
	cancel()
	for range 4 {
		select {
		case err := <-errs:
			if !errors.Is(err, context.Canceled) || !errors.Is(err, errAborted) {
				t.Errorf("post after cancel: %v, want an abort for context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("a request in flight was still running 5 s after its context was cancelled")
		}
	}
	if took := time.Since(cancelled); took > time.Second {
		t.Errorf("requests ended %v after the cancel, want well under a second", took)
	}
	if _, err := sub.post(context.Background(), "/message", []byte(`{}`), 1); !errors.Is(err, errAborted) {
		t.Errorf("post on an aborted submitter: %v, want errAborted", err)
	}
}

// An open-loop load at a rate so low that the interval between requests
// does not fit a time.Duration sends its first request and ends with its
// duration; a wrapping load (the bare endpoint's) used to send forever.
func TestOpenLoopAtATinyRateEnds(t *testing.T) {
	pool := NewPool(20, "test")
	if err := pool.Grow(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	b, err := StartBare(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan *LoadResult, 1)
	go func() {
		lr, err := RunLoad(t.Context(), pool, LoadSpec{URL: b.URL, Batch: 1, Clients: 1, Duration: 200 * time.Millisecond, Rate: 1e-300, From: 0, To: 2, Wrap: true})
		if err != nil {
			t.Error(err)
		}
		done <- lr
	}()
	select {
	case lr := <-done:
		if lr != nil && lr.Sent != 1 {
			t.Errorf("sent %d messages at 1e-300 msgs/s, want the first only", lr.Sent)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a 200 ms load at 1e-300 msgs/s was still running after 10 s")
	}
}
