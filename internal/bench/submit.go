package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
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
	base string // scheme://host:port
}

func newSubmitter(baseURL string, conns int) (*submitter, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("bench: node URL %q: want http://host:port", baseURL)
	}
	return &submitter{
		hc: &fasthttp.HostClient{
			Addr:                      u.Host,
			Dial:                      dialTCP, // not fasthttp's dialer: it caches DNS in a goroutine that never ends
			MaxConns:                  conns,
			MaxConnWaitTimeout:        requestTimeout,
			ReadTimeout:               requestTimeout,
			WriteTimeout:              requestTimeout,
			MaxIdemponentCallAttempts: 1,
			NoDefaultUserAgentHeader:  true,
		},
		base: u.Scheme + "://" + u.Host,
	}, nil
}

func dialTCP(addr string) (net.Conn, error) {
	return (&net.Dialer{Timeout: 5 * time.Second}).Dial("tcp", addr)
}

// close drops the idle connections.
func (s *submitter) close() { s.hc.CloseIdleConnections() }

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
