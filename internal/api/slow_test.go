package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
	"github.com/kimura-ledger/kimura/internal/chain"
)

// stalledPost opens a connection to n, sends a POST's headers and the start
// of a body much longer than what follows, and stops sending.
func stalledPost(t *testing.T, n *node, path string) net.Conn {
	t.Helper()
	return stalledPostLen(t, n, path, 100000)
}

// stalledPostLen is stalledPost with a Content-Length of length.
func stalledPostLen(t *testing.T, n *node, path string, length int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(n.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := "POST " + path + " HTTP/1.1\r\nHost: kimura\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(length) + "\r\n\r\n{\"messages\": ["
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	return c
}

// A body that stops arriving is answered 408 with a JSON reason once the
// grace has passed, rather than held open.
func TestStalledBodyIsRefused(t *testing.T) {
	const grace = 300 * time.Millisecond
	n := newNode(t, func(c *api.Config) { c.BodyGrace = grace })
	for _, path := range []string{"/message", "/messages"} {
		start := time.Now() // before the server can see the body start
		c := stalledPost(t, n, path)
		_ = c.SetReadDeadline(start.Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: no answer to a stalled body: %v", path, err)
		}
		waited := time.Since(start)
		r := response{code: resp.StatusCode, header: resp.Header}
		buf := new(strings.Builder)
		if _, err := bufio.NewReader(resp.Body).WriteTo(buf); err != nil {
			t.Fatal(err)
		}
		r.body = []byte(buf.String())
		e := wantError(t, r, http.StatusRequestTimeout, false)
		if !strings.Contains(field[string](t, e, "error"), "too slowly") {
			t.Errorf("%s: reason %v does not say the body was too slow", path, e)
		}
		if waited < grace {
			t.Errorf("%s: refused after %v, before the %v grace", path, waited, grace)
		}
		if n.pool.Len() != 0 {
			t.Fatalf("%s: a refused body left %d pending", path, n.pool.Len())
		}
	}
}

// Clients that trickle batch bodies hold no batch slot: a batch takes one
// only once its body has arrived. With more of them than there are slots,
// each well within its grace, a good batch is answered at once and the
// trickling ones are still being read.
func TestTricklingBatchesHoldNoSlot(t *testing.T) {
	n := newNode(t, func(c *api.Config) { c.BodyGrace = time.Minute })
	_, slots := n.api.BatchSlots()
	var stalled []net.Conn
	for range slots + 2 {
		stalled = append(stalled, stalledPost(t, n, "/messages"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for !n.api.BodiesHeld() {
		if time.Now().After(deadline) {
			t.Fatal("no stalled body is being read: the test exercises nothing")
		}
		time.Sleep(time.Millisecond)
	}
	if held, _ := n.api.BatchSlots(); held != 0 {
		t.Fatalf("bodies still arriving hold %d batch slots", held)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.srv.URL+"/messages", strings.NewReader(`{"messages": [`+submission(sign(1, "beside the trickles"))+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := n.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("good batch beside trickling ones: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n.pool.Len() != 1 {
		t.Fatalf("good batch beside trickling ones: status %d, %d pending; want 200 and 1", resp.StatusCode, n.pool.Len())
	}
	// The trickling ones were not refused to make room: each is unanswered.
	for i, c := range stalled {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if k, err := c.Read(make([]byte, 1)); k != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("trickling batch %d was answered (%d bytes, %v) within its grace", i, k, err)
		}
	}
}

// A body that keeps up MinBodyRate but goes on past MaxBodyTime is refused
// with 408 once that time is up, not before.
func TestBodyWholeWithinMaxBodyTime(t *testing.T) {
	const maxTime = time.Second
	n := newNode(t, func(c *api.Config) { c.BodyGrace = 100 * time.Millisecond; c.MaxBodyTime = maxTime })
	const length = 10_000_000
	start := time.Now() // before the request: the server's clock starts after it
	c := stalledPostLen(t, n, "/messages", length)
	stop := make(chan struct{})
	defer close(stop)
	// 800,000 bytes a second, twelve times MinBodyRate, so that a stall
	// of the writer on a busy machine does not bring the average below
	// it: the body would be whole after 12.5 s, far past maxTime.
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for left := length - len(`{"messages": [`); left > 0; left -= 16000 {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte(strings.Repeat(" ", min(left, 16000)))); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(start.Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a body still arriving after MaxBodyTime: %v", err)
	}
	_ = resp.Body.Close()
	if waited := time.Since(start); resp.StatusCode != http.StatusRequestTimeout || waited < maxTime {
		t.Fatalf("status %d after %v; want 408 once %v had passed", resp.StatusCode, waited, maxTime)
	}
}

// Every body gives its bytes back to the budget when its request is done,
// whatever became of it.
func TestBodyBudgetGivenBack(t *testing.T) {
	n := newNode(t, func(c *api.Config) { c.BodyGrace = 200 * time.Millisecond })
	object(t, n.do(http.MethodPost, "/message", submission(sign(1, "one"))), http.StatusAccepted)
	object(t, n.do(http.MethodPost, "/messages", `{"messages": [`+submission(sign(2, "two"))+`]}`), http.StatusOK)
	wantError(t, n.do(http.MethodPost, "/messages", `{"messages": [`), http.StatusBadRequest, false)
	wantError(t, n.do(http.MethodPost, "/message", `{"content": "`+strings.Repeat("x", 1<<20)+`"}`), http.StatusRequestEntityTooLarge, false)
	c := stalledPost(t, n, "/message")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: %v, %v; want 408", resp, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for n.api.BodiesHeld() {
		if time.Now().After(deadline) {
			t.Fatal("bytes of the body budget are still held after every request is done")
		}
		time.Sleep(time.Millisecond)
	}
}

// spaces is an endless reader of JSON whitespace.
type spaces struct{}

func (spaces) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

// A body over api.MaxBody is refused with 413 even where the content limit
// would allow a batch that large, and nothing of it is taken.
func TestBodyOverMaxBodyIsRefused(t *testing.T) {
	n := newNode(t, func(c *api.Config) { c.MaxContent = 1 << 20 }) // a batch limit of 6 GB, without MaxBody
	body := io.MultiReader(strings.NewReader(`{"messages": [`), io.LimitReader(spaces{}, api.MaxBody))
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, n.srv.URL+"/messages", body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := n.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("a body of %d bytes: status %d, want 413", api.MaxBody+14, resp.StatusCode)
	}
	if n.pool.Len() != 0 {
		t.Fatalf("%d pending after a refused body", n.pool.Len())
	}
}

// Clients that send batches and never read the answers hold no batch slot
// (nor body budget) while the answers wait to be written: a good batch is
// still answered. Each non-reading connection pipelines batches until the
// server stops reading it, blocked on an answer it cannot write.
func TestNonReadingClientsHoldNoSlot(t *testing.T) {
	n := newNode(t)
	// A thousand refused elements: an answer of tens of KB each.
	body := `{"messages":[` + strings.Repeat(`{"sender":"`+strings.Repeat("z", 40)+`"},`, 999) + `{}]}`
	req := []byte(fmt.Sprintf("POST /messages HTTP/1.1\r\nHost: kimura\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	_, slots := n.api.BatchSlots()
	var sent atomic.Int64 // requests written in full, over every connection
	for range slots + 1 {
		c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(strings.TrimPrefix(n.srv.URL, "http://"))))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadBuffer(4096)
		t.Cleanup(func() { _ = c.Close() })
		go func() {
			for range 400 {
				if _, err := c.Write(req); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
	}
	// Stalled: nothing more goes through for a second.
	deadline := time.Now().Add(20 * time.Second)
	for last, since := sent.Load(), time.Now(); ; {
		time.Sleep(50 * time.Millisecond)
		if now := sent.Load(); now != last {
			last, since = now, time.Now()
		} else if time.Since(since) > time.Second && last > int64(slots) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the non-reading connections never stalled (%d requests sent)", sent.Load())
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	good, err := http.NewRequestWithContext(ctx, http.MethodPost, n.srv.URL+"/messages", strings.NewReader(`{"messages": [`+submission(sign(1, "beside clients that do not read"))+`]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := n.srv.Client().Do(good)
	if err != nil {
		held, _ := n.api.BatchSlots()
		t.Fatalf("good batch beside %d clients that do not read: %v (batch slots held: %d of %d)", slots+1, err, held, slots)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("good batch beside clients that do not read: status %d", resp.StatusCode)
	}
}

// The write deadline of a batch's answer ends with the answer (net/http
// lifts it once a response is finished): a later request on the same
// keep-alive connection, after that deadline has passed, is answered in
// full.
func TestAnswerDeadlineEndsWithAnswer(t *testing.T) {
	const answerTimeout = 100 * time.Millisecond
	n := newNode(t, func(c *api.Config) { c.AnswerTimeout = answerTimeout })
	client := n.srv.Client() // one keep-alive connection, used in turn
	post := func(nonce uint64) {
		t.Helper()
		resp, err := client.Post(n.srv.URL+"/messages", "application/json", strings.NewReader(`{"messages": [`+submission(sign(nonce, "on one connection"))+`]}`))
		if err != nil {
			t.Fatalf("batch %d: %v", nonce, err)
		}
		defer resp.Body.Close()
		if _, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("batch %d: status %d, %v", nonce, resp.StatusCode, err)
		}
	}
	post(1)
	<-time.After(3 * answerTimeout) // the first answer's deadline is long past
	post(2)
	if n.pool.Len() != 2 {
		t.Fatalf("%d pending, want 2", n.pool.Len())
	}
}

// panickingSubmitter fails the way a bug would.
type panickingSubmitter struct{}

func (panickingSubmitter) Submit([]chain.Message) ([]chain.Message, []error) {
	panic("submitter bug")
}

// A batch whose judging panics (net/http recovers the handler) still gives
// its slot back: more such batches than there are slots leave every slot
// free.
func TestPanicInBatchGivesSlotBack(t *testing.T) {
	n := newNode(t, func(c *api.Config) {
		c.Submitter = panickingSubmitter{}
		c.Log = slog.New(slog.DiscardHandler)
	})
	_, slots := n.api.BatchSlots()
	body := `{"messages": [` + submission(sign(1, "reaches the bug")) + `]}`
	client := *n.srv.Client()
	client.Timeout = 5 * time.Second // a batch that waits for a lost slot fails the test instead of hanging it
	for range 2 * slots {
		if resp, err := client.Post(n.srv.URL+"/messages", "application/json", strings.NewReader(body)); err == nil {
			_ = resp.Body.Close()
		}
	}
	if held, _ := n.api.BatchSlots(); held != 0 {
		t.Fatalf("%d of %d batch slots held after batches whose judging panicked", held, slots)
	}
}
