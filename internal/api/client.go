package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kimura-ledger/kimura/internal/chain"
)

// HTTPError is a non-2xx answer from a node.
type HTTPError struct {
	Code   int
	Reason string      // the body's "error"
	ID     *chain.Hash // the body's "id", on 409
}

func (e *HTTPError) Error() string { return fmt.Sprintf("api: HTTP %d: %s", e.Code, e.Reason) }

// Client talks to a node's HTTP API. It is safe for concurrent use.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client for the node at base, e.g. http://127.0.0.1:8545.
func NewClient(base string) *Client {
	return &Client{
		base: strings.TrimRight(base, "/"),
		http: &http.Client{Timeout: 30 * time.Second, Transport: directTransport()},
	}
}

// directTransport is the transport of every request a node makes to
// another: dialled directly, never through a proxy named in the
// environment (HTTP_PROXY and the like), since a node dials only addresses
// it was given or learned from the leader.
func directTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
}

// CheckNodeURL says whether s can be the URL of a node for NewClient:
// http or https, with a host, a port (if any) from 1 to 65535, and neither
// a query nor a fragment, not even an empty one, which would swallow the
// routes the client appends.
func CheckNodeURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("%q is not an http:// URL", s)
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(s, "#"):
		return fmt.Errorf("%q has a query or a fragment", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("%q: port %s is not from 1 to 65535", s, p)
		}
	}
	return nil
}

// CloseIdleConnections closes the client's idle keep-alive connections,
// for a node that stops following.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// MaxAnswer bounds the answers whose size the API bounds: a GET /blocks
// answer holds MaxBlocksBytes of records or one block alone, which is at
// most 64 MiB; the others are smaller. Whatever sits at the other end, it
// cannot make the client hold more. A block with its messages is as large
// as the leader's limits let it be: BlockWithin takes a bound for it.
const MaxAnswer = 128 << 20

// BadAnswerError is an answer a node gave that the client refuses: larger
// than it may be, not in the form asked for, or about something else than
// was asked. The node was reached; what it said is wrong.
type BadAnswerError struct {
	Request string // e.g. "GET /height"
	Reason  string
}

func (e *BadAnswerError) Error() string { return "api: " + e.Request + ": " + e.Reason }

func badAnswer(request, format string, args ...any) *BadAnswerError {
	return &BadAnswerError{Request: request, Reason: fmt.Sprintf(format, args...)}
}

// readAnswer reads the body of the answer to request, refusing one over
// limit bytes.
func readAnswer(request string, resp *http.Response, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("api: %s: read answer: %w", request, err)
	}
	if int64(len(data)) > limit {
		return nil, badAnswer(request, "answer over %d bytes", limit)
	}
	return data, nil
}

// Bounds on an error answer: a node's is a short JSON object; anything else
// (a proxy's HTML page, say) is cut down to a line of text.
const (
	maxErrorAnswer = 64 << 10
	maxErrorReason = 200
)

// readError turns a non-2xx answer into an *HTTPError: the body's "error"
// and "id", or else the start of the body on one line.
func readError(resp *http.Response) *HTTPError {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorAnswer)) // what arrived is all there is to say
	var eb errorBody
	if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
		eb = errorBody{Error: strings.Join(strings.Fields(string(data)), " ")}
		if len(eb.Error) > maxErrorReason {
			eb.Error = strings.ToValidUTF8(eb.Error[:maxErrorReason], "") + "..."
		}
	}
	return &HTTPError{Code: resp.StatusCode, Reason: eb.Error, ID: eb.ID}
}

// Base returns the node's URL.
func (c *Client) Base() string { return c.base }

// do sends a request and decodes a 2xx JSON answer of at most MaxAnswer
// bytes into out (unless nil).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	return c.doLimit(ctx, method, path, body, out, MaxAnswer)
}

// doLimit is do with a bound on the answer's size.
func (c *Client) doLimit(ctx context.Context, method, path string, body, out any, limit int64) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("api: encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return readError(resp)
	}
	data, err := readAnswer(method+" "+path, resp, limit)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return badAnswer(method+" "+path, "decode answer: %v", err)
	}
	return nil
}

// Health calls GET /health.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	return h, c.do(ctx, http.MethodGet, "/health", nil, &h)
}

// Height calls GET /height.
func (c *Client) Height(ctx context.Context) (Height, error) {
	var h Height
	return h, c.do(ctx, http.MethodGet, "/height", nil, &h)
}

// Latest calls GET /latest.
func (c *Client) Latest(ctx context.Context) (Block, error) {
	var b Block
	return b, c.do(ctx, http.MethodGet, "/latest", nil, &b)
}

// Block calls GET /block/{height}, with the messages if asked, and refuses
// an answer over MaxAnswer bytes.
func (c *Client) Block(ctx context.Context, height uint64, messages bool) (Block, error) {
	return c.BlockWithin(ctx, height, messages, MaxAnswer)
}

// BlockWithin is Block with the answer bounded by limit bytes, for a block
// with its messages, whose size the caller knows from its own copy.
func (c *Client) BlockWithin(ctx context.Context, height uint64, messages bool, limit int64) (Block, error) {
	var b Block
	path := fmt.Sprintf("/block/%d", height)
	if messages {
		path += "?messages=true"
	}
	return b, c.doLimit(ctx, http.MethodGet, path, nil, &b, limit)
}

// Message calls GET /message/{id}; an answer about another message is an
// error.
func (c *Client) Message(ctx context.Context, id chain.Hash) (Message, error) {
	var m Message
	if err := c.do(ctx, http.MethodGet, "/message/"+id.String(), nil, &m); err != nil {
		return m, err
	}
	if m.ID != id {
		return m, badAnswer("GET /message/"+id.String(), "the answer is about message %s", m.ID)
	}
	if m.Status != StatusPending && m.Status != StatusConfirmed {
		return m, badAnswer("GET /message/"+id.String(), "the answer has status %q", m.Status)
	}
	return m, nil
}

// Submit calls POST /message with a signed message. An answer that does not
// acknowledge m as pending, by its own ID, is an error.
func (c *Client) Submit(ctx context.Context, m *chain.Message) (Accepted, error) {
	var a Accepted
	if err := c.do(ctx, http.MethodPost, "/message", NewSubmission(m), &a); err != nil {
		return a, err
	}
	if a.ID != m.ID() || a.Status != StatusPending {
		return a, badAnswer("POST /message", "the answer (id %s, status %q) does not acknowledge message %s as pending", a.ID, a.Status, m.ID())
	}
	return a, nil
}

// SubmitBatch calls POST /messages.
func (c *Client) SubmitBatch(ctx context.Context, msgs []chain.Message) ([]Result, error) {
	req := struct {
		Messages []Submission `json:"messages"`
	}{Messages: make([]Submission, len(msgs))}
	for i := range msgs {
		req.Messages[i] = NewSubmission(&msgs[i])
	}
	var out struct {
		Results []Result `json:"results"`
	}
	return out.Results, c.do(ctx, http.MethodPost, "/messages", req, &out)
}

// BlockRecords fetches up to limit consecutive blocks from height from, in
// the binary record form (see BlockRecordsType), decoded but not verified.
func (c *Client) BlockRecords(ctx context.Context, from uint64, limit int) ([]*chain.Block, error) {
	path := fmt.Sprintf("/blocks?from=%d&limit=%d", from, limit)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	req.Header.Set("Accept", BlockRecordsType)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readError(resp)
	}
	request := "GET " + path
	data, err := readAnswer(request, resp, MaxAnswer)
	if err != nil {
		return nil, err
	}
	if ct := resp.Header.Get("Content-Type"); ct != BlockRecordsType {
		return nil, badAnswer(request, "answered %q, not block records", ct)
	}
	var out []*chain.Block
	for len(data) > 0 {
		if len(data) < 4 {
			return nil, badAnswer(request, "block records: truncated length")
		}
		n := binary.BigEndian.Uint32(data)
		if uint64(len(data)-4) < uint64(n) {
			return nil, badAnswer(request, "block records: truncated record")
		}
		b, err := chain.DecodeBlock(data[4 : 4+n])
		if err != nil {
			return nil, badAnswer(request, "block records: %v", err)
		}
		out = append(out, b)
		data = data[4+n:]
	}
	return out, nil
}
