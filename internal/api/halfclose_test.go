package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
)

// Some clients and proxies send a whole request, then shut down their side
// of the connection (shutdown(SHUT_WR)) while they wait for the answer.
// net/http reads that as the client going away and cancels the request's
// context; these tests hold the node's work until that has happened and
// check that such a client still gets its answer.

// halfClosedPost sends one POST on a fresh connection, closes the
// connection's write side, and reads the answer.
func halfClosedPost(t *testing.T, base, path, body string) (int, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, err = fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: kimura\r\nContent-Type: application/json\r\nX-Half-Closed: 1\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

// watchHalfClosed serves h and closes the channel it returns once the
// context of the request marked X-Half-Closed is cancelled.
func watchHalfClosed(h http.Handler) (http.Handler, <-chan struct{}) {
	cancelled := make(chan struct{})
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Half-Closed") != "" {
			ctx := r.Context()
			go func() { <-ctx.Done(); once.Do(func() { close(cancelled) }) }()
		}
		h.ServeHTTP(w, r)
	}), cancelled
}

// gatedSubmitter holds every Submit until its gate opens.
type gatedSubmitter struct {
	api.Submitter
	in   chan struct{} // one value for each Submit that has begun
	gate chan struct{}
}

func (g *gatedSubmitter) Submit(msgs []chain.Message) ([]chain.Message, []error) {
	g.in <- struct{}{}
	<-g.gate
	return g.Submitter.Submit(msgs)
}

// busyLeader is a node whose batch slots are all taken by batches held in
// Submit until open is called. release opens the gate and waits for those
// batches' answers; a test defers it (their requests end with the test's
// context), and it runs again before the servers' cleanups, which wait for
// their handlers, should the test end early.
func busyLeader(t *testing.T) (n *node, open, release func()) {
	t.Helper()
	var g *gatedSubmitter
	n = newNode(t, func(c *api.Config) {
		g = &gatedSubmitter{Submitter: c.Submitter, in: make(chan struct{}, 64), gate: make(chan struct{})}
		c.Submitter = g
	})
	var openGate sync.Once
	open = func() { openGate.Do(func() { close(g.gate) }) }
	var wg sync.WaitGroup
	release = func() { open(); wg.Wait() }
	t.Cleanup(release)
	_, slots := n.api.BatchSlots()
	for i := range slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.do(http.MethodPost, "/messages", `{"messages":[`+submission(sign(uint64(i+1), "holds a slot"))+`]}`)
		}()
	}
	for range slots {
		select {
		case <-g.in:
		case <-time.After(10 * time.Second):
			t.Fatal("the batch slots were not all taken within 10 s")
		}
	}
	return n, open, release
}

// A half-closed client whose batch waits for a slot (a busy leader) gets
// its results; it used to get an empty 200, its batch never judged.
func TestHalfClosedClientGetsItsBatchJudged(t *testing.T) {
	n, open, release := busyLeader(t)
	defer release()
	h, cancelled := watchHalfClosed(n.api)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	go func() { <-cancelled; open() }()

	m := sign(100, "half-closed")
	code, body := halfClosedPost(t, srv.URL, "/messages", `{"messages":[`+submission(m)+`]}`)
	var answer struct{ Results []api.Result }
	if code != http.StatusOK || json.Unmarshal(body, &answer) != nil || len(answer.Results) != 1 || answer.Results[0].Status != api.StatusPending {
		t.Fatalf("half-closed batch: %d %q; want 200 with its one result, pending", code, body)
	}
	if _, ok := n.pool.Get(m.ID()); !ok {
		t.Fatal("the half-closed client's message is not pending")
	}
}

// A peer forwards a half-closed client's submission and returns the
// leader's answer; it used to cancel the forward and answer 503 "leader
// unreachable" while the leader was up.
func TestHalfClosedClientThroughPeerIsForwarded(t *testing.T) {
	leader := newNode(t)
	release := make(chan struct{})
	// The leader answers only once the peer has seen its client's context
	// cancelled, so the forward is in flight when that happens.
	slowLeader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		leader.api.ServeHTTP(w, r)
	}))
	t.Cleanup(slowLeader.Close)
	peerHandler, cancelled := watchHalfClosed(api.NewServer(api.Config{Chain: leader.chain, LeaderURL: slowLeader.URL, MaxContent: maxContent}))
	go func() { <-cancelled; close(release) }()
	peer := httptest.NewServer(peerHandler)
	t.Cleanup(peer.Close)

	m := sign(7, "via the peer, half-closed")
	code, body := halfClosedPost(t, peer.URL, "/message", submission(m))
	if code != http.StatusAccepted {
		t.Fatalf("peer answered %d %s; want 202 from the leader", code, body)
	}
	if _, ok := leader.pool.Get(m.ID()); !ok {
		t.Fatal("the leader does not have the forwarded message")
	}
}

// StopIntake, and Stop, answer a batch still waiting for a slot (503), so
// that a stopping node's handlers end; the batches already being judged
// are answered as usual.
func TestStopEndsBatchWaitingForSlot(t *testing.T) {
	for _, stop := range []struct {
		name string
		f    func(*api.Server)
	}{{"StopIntake", (*api.Server).StopIntake}, {"Stop", (*api.Server).Stop}} {
		t.Run(stop.name, func(t *testing.T) {
			n, _, release := busyLeader(t)
			defer release()
			done := make(chan response, 1)
			go func() {
				done <- n.do(http.MethodPost, "/messages", `{"messages":[`+submission(sign(100, "waits"))+`]}`)
			}()
			_, slots := n.api.BatchSlots()
			deadline := time.Now().Add(10 * time.Second)
			for n.started.Load() < int64(slots)+1 { // it has reached the server
				if time.Now().After(deadline) {
					t.Fatal("the waiting batch never reached the server")
				}
				time.Sleep(time.Millisecond)
			}
			stop.f(n.api)
			select {
			case r := <-done:
				wantError(t, r, http.StatusServiceUnavailable, false)
			case <-time.After(10 * time.Second):
				t.Fatalf("%s did not end a batch waiting for a slot", stop.name)
			}
			if _, ok := n.pool.Get(idOf(100)); ok {
				t.Fatal("a batch answered 503 left its message pending")
			}
			release()
			for i := range slots {
				if _, ok := n.pool.Get(idOf(uint64(i + 1))); !ok {
					t.Fatalf("batch %d, judged when %s was called, did not finish", i+1, stop.name)
				}
			}
		})
	}
}
