package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// requestTimeout bounds one submission, from waiting for a connection to
// the last byte of the answer.
const requestTimeout = 60 * time.Second

// submitter posts pre-encoded bodies to one node over at most conns
// keep-alive connections. It uses fasthttp's client, which costs a fraction
// of net/http's client per request: the load generator shares the machine
// with the nodes it measures, so every microsecond it spends is taken from
// them (net/http's client took about as much CPU per request as the bare
// endpoint's whole handler). The servers measured are net/http, as a user
// runs them; a request is never retried, so each message is sent once.
type submitter struct {
	hc   *fasthttp.HostClient
	base string          // scheme://host:port
	ctx  context.Context // done: abort

	mu      sync.Mutex
	conns   map[*trackedConn]struct{} // open connections, for abort
	aborted bool
	stop    func() bool // ends the watch on the context
}

// newSubmitter returns a submitter to baseURL whose requests end soon after
// ctx is done: fasthttp's client takes no context, and without that a
// request in flight when Ctrl-C is pressed would keep the tool for up to
// requestTimeout. Call close when done with it.
func newSubmitter(ctx context.Context, baseURL string, conns int) (*submitter, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("bench: node URL %q: want http://host:port", baseURL)
	}
	s := &submitter{base: u.Scheme + "://" + u.Host, ctx: ctx, conns: make(map[*trackedConn]struct{})}
	s.hc = &fasthttp.HostClient{
		Addr:                      u.Host,
		Dial:                      s.dial, // not fasthttp's dialer: it caches DNS in a goroutine that never ends
		MaxConns:                  conns,
		MaxConnWaitTimeout:        requestTimeout,
		ReadTimeout:               requestTimeout,
		WriteTimeout:              requestTimeout,
		MaxIdemponentCallAttempts: 1,
		NoDefaultUserAgentHeader:  true,
	}
	s.stop = context.AfterFunc(ctx, s.abort)
	return s, nil
}

// errAborted is a request refused or cut because the submitter's context
// is done.
var errAborted = errors.New("bench: submission aborted")

// dial opens a connection the submitter can cut, unless it was aborted;
// a dial under way ends when the submitter's context is done.
func (s *submitter) dial(addr string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(s.ctx, "tcp", addr)
	if err != nil {
		if s.ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", errAborted, err)
		}
		return nil, err
	}
	tc := &trackedConn{Conn: c, s: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		_ = c.Close()
		return nil, errAborted
	}
	s.conns[tc] = struct{}{}
	return tc, nil
}

// abort closes every open connection, which ends the requests in flight on
// them at once (a closed connection's pending reads and writes return), and
// refuses new ones.
func (s *submitter) abort() {
	s.mu.Lock()
	s.aborted = true
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// close stops watching the context and drops the idle connections.
func (s *submitter) close() {
	s.stop()
	s.hc.CloseIdleConnections()
}

// trackedConn is a connection its submitter can cut.
type trackedConn struct {
	net.Conn
	s    *submitter
	once sync.Once
}

// Close closes the connection once and forgets it.
func (c *trackedConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		err = c.Conn.Close()
	})
	return err
}

// post sends one request to path and returns, per message, 0 when it was
// acknowledged or the HTTP status it was refused with. n is the number of
// messages in body: 1 for POST /message.
func (s *submitter) post(ctx context.Context, path string, body []byte, n int) ([]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(s.base + path)
	req.Header.SetMethod(http.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := s.hc.Do(req, resp); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", errAborted, ctx.Err())
		}
		return nil, err
	}
	return answerCodes(resp.StatusCode(), resp.Body(), n)
}

// batchAnswer is the part of POST /messages' answer the load reads.
type batchAnswer struct {
	Results []struct {
		Status string `json:"status"`
		Code   int    `json:"code"`
		Error  string `json:"error"`
	} `json:"results"`
}

// answerCodes reads a submission's answer: per message, 0 when it was
// acknowledged or the status it was refused with.
func answerCodes(status int, data []byte, n int) ([]int, error) {
	codes := make([]int, n)
	switch {
	case n == 1 && status == http.StatusAccepted:
	case n > 1 && status == http.StatusOK:
		var a batchAnswer
		if err := json.Unmarshal(data, &a); err != nil {
			return nil, fmt.Errorf("bench: batch answer: %w", err)
		}
		if len(a.Results) != n {
			return nil, fmt.Errorf("bench: batch of %d answered with %d results", n, len(a.Results))
		}
		for i, r := range a.Results {
			if r.Status != "pending" {
				codes[i] = max(r.Code, 1)
			}
		}
	default:
		for i := range codes {
			codes[i] = status
		}
	}
	return codes, nil
}
