// Package api is Kimura's HTTP interface: the handlers of every route of the
// SPEC's HTTP API, over the small interfaces below, and the Client that
// peers and the command-line tools use to talk to a node.
package api

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	gojson "github.com/goccy/go-json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/semaphore"

	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/mempool"
	"github.com/kimura-ledger/kimura/internal/store"
)

// Chain is what the read routes need of a node. Errors wrapping
// store.ErrNotFound become 404; a *StatusError becomes its code.
type Chain interface {
	Health() Health
	Tip() store.Tip
	Block(height uint64) (*chain.Block, error)
	// BlockRecords returns up to limit consecutive block records from
	// height from, stopping at the tip and, after the first, before they
	// pass maxBytes in all (see store.Store.BlockRecords).
	BlockRecords(from uint64, limit, maxBytes int) ([][]byte, error)
	// Message returns a pending or confirmed message; a peer may fetch it.
	Message(ctx context.Context, id chain.Hash) (Message, error)
	// BlockMessages returns b's messages in block order, confirmed.
	BlockMessages(ctx context.Context, b *chain.Block) ([]Message, error)
}

// Submitter takes messages into the pending queue; only the leader has one.
// Submit returns once the accepted messages are durable; errs[i] is nil for
// an accepted msgs[i] and wraps a mempool error otherwise.
type Submitter interface {
	Submit(msgs []chain.Message) (accepted []chain.Message, errs []error)
}

// StatusError is an error with the HTTP status it should be answered with.
type StatusError struct {
	Code int
	Err  error
}

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

// Limits of the API.
const (
	// MaxBatch is the most messages POST /messages takes.
	MaxBatch = 1000
	// MaxBlocksJSON and MaxBlocksBinary cap GET /blocks' limit.
	MaxBlocksJSON   = 1000
	MaxBlocksBinary = 10000
	// MaxBlocksBytes caps the block records one GET /blocks answer is
	// built from, in either form: 10,000 blocks of 10,000 messages would
	// be 6 GB. An answer holds at least one block, however large.
	MaxBlocksBytes = 16 << 20
	// BlockRecordsType is the media type a client may Accept from GET /blocks
	// to receive raw block records: each a 4-byte big-endian length and the
	// record (chain.Block encoding). Peers catch up with it, since a record,
	// unlike the JSON form, carries the message hashes that let them check
	// the message root.
	BlockRecordsType = "application/x-kimura-block-records"
)

// ForwardTimeout bounds a peer's wait for the leader's answer to a
// forwarded submission; past it the peer answers 503, as for a leader that
// cannot be reached at all.
const ForwardTimeout = 10 * time.Second

// Config is what a Server serves.
type Config struct {
	Chain Chain
	// Submitter takes submissions on the leader. On a peer it is nil and
	// LeaderURL is set: submissions are forwarded there as they are.
	Submitter  Submitter
	LeaderURL  string
	MaxContent int // content limit in bytes, for the request body limit
	// BodyGrace is how long a submission body may take before it must keep
	// up MinBodyRate; zero means DefaultBodyGrace.
	BodyGrace time.Duration
	// MaxBodyTime is the longest a submission body may take to arrive
	// whatever its pace; zero means DefaultMaxBodyTime.
	MaxBodyTime time.Duration
	// AnswerTimeout bounds the writing of an answer the node holds nothing
	// for any longer (a batch's results, a forwarded answer); zero means
	// DefaultAnswerTimeout.
	AnswerTimeout time.Duration
	Log           *slog.Logger
}

// Slow bodies. A submission body must arrive at an average of at least
// MinBodyRate bytes a second once BodyGrace has passed, and whole within
// MaxBodyTime; a client that falls behind is answered 408 and its
// connection closed. At the floor rate the largest single submission (64
// KiB of content) has over 16 s; a body of MaxBody needs about 1.1 MB/s.
//
// Bodies are read before a batch takes one of the batch slots, so a slow
// body holds no slot; what bounds the memory of bodies being read is a
// budget of bytes (Server.bodies) that a body takes as its bytes arrive.
// A client that trickles holds only what it has sent, and for at most
// MaxBodyTime: to keep the budget from others it would have to send it
// whole again and again.
const (
	DefaultBodyGrace   = 10 * time.Second
	DefaultMaxBodyTime = 2 * time.Minute
	MinBodyRate        = 64 << 10
)

// Server routes HTTP requests to a node.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	forward *http.Client
	// work bounds what a request has the node do once the request has
	// arrived (forwards and fetches to the leader, which have their own
	// timeouts; through intake, waits for a slot) in place of the request's
	// context: net/http
	// cancels that when the client half-closes its connection after
	// sending, as some clients and proxies do, and such a client would get
	// an empty answer or a false "leader unreachable". Stop ends it.
	work    context.Context
	endWork context.CancelFunc
	// intake ends the waits for a batch or listing slot; StopIntake (and
	// Stop) end it, so that a stopping node starts no new work while what
	// it has begun finishes.
	intake    context.Context
	endIntake context.CancelFunc
	// batches bounds the POST /messages batches decoded and judged at once;
	// a batch takes a slot once its body has arrived.
	batches chan struct{}
	// bodies bounds the bytes of submission bodies held at once: a body
	// takes its bytes from it as they arrive and gives them back when its
	// request is done; a client whose body finds none left waits (its body
	// unread, so TCP holds it back).
	bodies     *semaphore.Weighted
	bodyBudget int64 // the size of bodies
	// listings bounds the answers of a block with its messages built at
	// once (see MaxListings).
	listings chan struct{}
}

// NewServer returns the handler for every route of the API.
func NewServer(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.BodyGrace <= 0 {
		cfg.BodyGrace = DefaultBodyGrace
	}
	if cfg.MaxBodyTime <= 0 {
		cfg.MaxBodyTime = DefaultMaxBodyTime
	}
	if cfg.AnswerTimeout <= 0 {
		cfg.AnswerTimeout = DefaultAnswerTimeout
	}
	slots := 2 * runtime.GOMAXPROCS(0)
	s := &Server{
		cfg: cfg, mux: http.NewServeMux(),
		forward:    &http.Client{Timeout: ForwardTimeout, Transport: directTransport()},
		batches:    make(chan struct{}, slots),
		bodies:     semaphore.NewWeighted(int64(slots) * (MaxBody + 1)), // a body's buffer is one byte over its limit
		bodyBudget: int64(slots) * (MaxBody + 1),
		listings:   make(chan struct{}, MaxListings),
	}
	s.work, s.endWork = context.WithCancel(context.Background())
	s.intake, s.endIntake = context.WithCancel(s.work)
	routes := []struct {
		path string
		verb string
		h    http.HandlerFunc
	}{
		{"/health", "GET", s.health},
		{"/height", "GET", s.height},
		{"/latest", "GET", s.latest},
		{"/block/{height}", "GET", s.block},
		{"/block/{$}", "GET", s.block}, // an empty height: 400, not 404
		{"/blocks", "GET", s.blocks},
		{"/message/{id}", "GET", s.message},
		{"/message/{$}", "GET", s.message},
		{"/message", "POST", s.submitOne},
		{"/messages", "POST", s.submitBatch},
	}
	for _, r := range routes {
		s.mux.HandleFunc(r.verb+" "+r.path, r.h)
		allow := r.verb
		if allow == "GET" {
			allow = "GET, HEAD"
		}
		s.mux.HandleFunc(r.path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		})
	}
	noRoute := func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such route: "+r.URL.Path)
	}
	s.mux.HandleFunc("/", noRoute)
	// Without this ServeMux would redirect /block to /block/.
	s.mux.HandleFunc("/block", noRoute)
	return s
}

// ServeHTTP routes r. A path that is not in clean form ("//health",
// "/a/../health") is answered 404 here: ServeMux would redirect it with a
// body that is not JSON.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; p != cleanPath(p) {
		writeError(w, http.StatusNotFound, "no such route: "+p)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// cleanPath is path.Clean keeping a trailing slash, as ServeMux compares.
func cleanPath(p string) string {
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type errorBody struct {
	Error string      `json:"error"`
	ID    *chain.Hash `json:"id,omitempty"`
}

func writeError(w http.ResponseWriter, code int, reason string) {
	writeJSON(w, code, errorBody{Error: reason})
}

// fail answers err with the status it maps to.
func (s *Server) fail(w http.ResponseWriter, err error) {
	code := statusOf(err)
	if code >= 500 {
		s.cfg.Log.Error("request failed", "err", err)
	}
	writeError(w, code, err.Error())
}

// statusOf maps the errors of the node's packages to HTTP statuses.
func statusOf(err error) int {
	var se *StatusError
	switch {
	case errors.As(err, &se):
		return se.Code
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, mempool.ErrDuplicate):
		return http.StatusConflict
	case errors.Is(err, mempool.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, mempool.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, mempool.ErrFull):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Chain.Health())
}

func (s *Server) height(w http.ResponseWriter, _ *http.Request) {
	t := s.cfg.Chain.Tip()
	writeJSON(w, http.StatusOK, Height{Height: t.Height, Hash: t.Hash})
}

func (s *Server) latest(w http.ResponseWriter, r *http.Request) {
	s.serveBlock(w, r, s.cfg.Chain.Tip().Height)
}

func (s *Server) block(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("height")
	h, ok := parseCount(v)
	if !ok {
		writeError(w, http.StatusBadRequest, "height must be a non-negative integer")
		return
	}
	if h == math.MaxUint64 && v != strconv.FormatUint(h, 10) {
		writeError(w, http.StatusNotFound, "no block at height "+v)
		return
	}
	s.serveBlock(w, r, h)
}

// parseCount parses a non-negative decimal integer, digits only. One too
// large for a uint64 is still a number, not malformed: it reads as
// math.MaxUint64, past any chain.
func parseCount(v string) (uint64, bool) {
	n, err := strconv.ParseUint(v, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return math.MaxUint64, true
	}
	return n, err == nil
}

func (s *Server) serveBlock(w http.ResponseWriter, r *http.Request, h uint64) {
	b, err := s.cfg.Chain.Block(h)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("no block at height %d: %w", h, err)
		}
		s.fail(w, err)
		return
	}
	out := NewBlock(b)
	switch r.URL.Query().Get("messages") {
	case "", "false", "0":
		writeJSON(w, http.StatusOK, out)
	case "true", "1":
		s.serveBlockMessages(w, r, b, out)
	default:
		writeError(w, http.StatusBadRequest, "messages must be true or false")
	}
}

// MaxListings is how many answers of a block with its messages a node
// builds at once; more wait their turn. Each holds the block's contents,
// up to --max-block-messages times --max-message-bytes (655 MB with the
// defaults), so without a bound a few clients asking for one large block
// at once could take all the node's memory.
const MaxListings = 2

// serveBlockMessages answers b with its messages. The JSON is written one
// message at a time, and each message is let go once written, so the
// answer never holds a second copy of the block in JSON.
func (s *Server) serveBlockMessages(w http.ResponseWriter, r *http.Request, b *chain.Block, out Block) {
	// A client that leaves while it waits gives up its turn: an answer of
	// hundreds of megabytes is not built for no one.
	select {
	case s.listings <- struct{}{}:
		defer func() { <-s.listings }()
	case <-r.Context().Done():
		writeError(w, http.StatusServiceUnavailable, "request cancelled while waiting for a listing slot")
		return
	case <-s.intake.Done():
		writeError(w, http.StatusServiceUnavailable, errStopping)
		return
	}
	msgs, err := s.cfg.Chain.BlockMessages(s.work, b)
	if err != nil {
		s.fail(w, err)
		return
	}
	head, err := json.Marshal(out) // Messages is empty, so left out
	if err != nil {
		s.fail(w, fmt.Errorf("encode block %d: %w", b.Height, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	buf := append(head[:len(head)-1], `,"messages":[`...)
	for i := range msgs {
		if i > 0 {
			buf = append(buf, ',')
		}
		if buf, err = appendJSON(buf, &msgs[i]); err != nil {
			// Too late for a status: cut the answer short, so that the
			// client sees a broken exchange, not a well-formed lie.
			s.cfg.Log.Error("encoding a block's messages", "height", b.Height, "err", err)
			panic(http.ErrAbortHandler)
		}
		msgs[i] = Message{}
		if len(buf) >= 64<<10 {
			if _, err := w.Write(buf); err != nil {
				return
			}
			buf = buf[:0]
		}
	}
	_, _ = w.Write(append(buf, "]}\n"...))
}

// appendJSON appends v's JSON to buf, as encoding/json writes it.
func appendJSON(buf []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(buf, b...), err
}

func (s *Server) blocks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, ok := parseCount(q.Get("from"))
	if !ok {
		writeError(w, http.StatusBadRequest, "from must be a non-negative integer")
		return
	}
	binaryForm := strings.Contains(r.Header.Get("Accept"), BlockRecordsType)
	limit := MaxBlocksJSON
	if binaryForm {
		limit = MaxBlocksBinary
	}
	if v := q.Get("limit"); v != "" {
		n, ok := parseCount(v)
		if !ok || n < 1 {
			writeError(w, http.StatusBadRequest, "limit must be a positive integer")
			return
		}
		limit = int(min(uint64(limit), n))
	}
	recs, err := s.cfg.Chain.BlockRecords(from, limit, MaxBlocksBytes)
	if err != nil {
		s.fail(w, err)
		return
	}
	if binaryForm {
		w.Header().Set("Content-Type", BlockRecordsType)
		var buf []byte
		for _, rec := range recs {
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(rec)))
			buf = append(buf, rec...)
		}
		_, _ = w.Write(buf)
		return
	}
	out := struct {
		Blocks []Block `json:"blocks"`
	}{Blocks: make([]Block, 0, len(recs))}
	for _, rec := range recs {
		b, err := chain.DecodeBlock(rec)
		if err != nil {
			s.fail(w, fmt.Errorf("stored block record: %w", err))
			return
		}
		out.Blocks = append(out.Blocks, NewBlock(b))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) message(w http.ResponseWriter, r *http.Request) {
	id, err := chain.ParseHash(r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed message id: "+err.Error())
		return
	}
	m, err := s.cfg.Chain.Message(s.work, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("unknown message %s: %w", id, err)
		}
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// MaxBody bounds any submission body, whatever the content limit: what a
// few batch slots may hold in memory at once. A batch of a thousand 64 KiB
// messages without escapes (66 MB) fits; a batch that does not is refused
// with 413 and can be split.
const MaxBody = 128 << 20

// bodyLimit bounds a submission body of n messages: content may be
// JSON-escaped to six bytes a byte, plus room for the other fields; never
// over MaxBody.
func (s *Server) bodyLimit(n int) int64 {
	return min(MaxBody, int64(n)*(int64(s.cfg.MaxContent)*6+4096))
}

// readRaw reads a body of at most bodyLimit(n) bytes, answering 413, 408,
// 503 or 400 itself when it cannot. The body holds its bytes of the budget
// until release is called (ok or not), once the request is done with it.
func (s *Server) readRaw(w http.ResponseWriter, r *http.Request, n int) (_ []byte, release func(), ok bool) {
	limit := s.bodyLimit(n)
	br := &bodyReader{
		r: http.MaxBytesReader(w, r.Body, limit), rc: http.NewResponseController(w),
		ctx: r.Context(), budget: s.bodies, limit: limit,
		start: time.Now(), grace: s.cfg.BodyGrace, maxTime: s.cfg.MaxBodyTime,
	}
	release = func() { // once: later calls give back nothing
		s.bodies.Release(br.held)
		br.held = 0
	}
	body, err := br.readAll(r.ContentLength)
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Closing spares net/http's wait for the rest of the body,
			// which it would otherwise read to keep the connection.
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, fmt.Sprintf("request body arrived too slowly: %d bytes in %v", br.n, time.Since(br.start).Round(time.Millisecond)))
		case errors.Is(err, errNoBudget):
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, err.Error())
		case r.Context().Err() != nil: // the client is gone
		default:
			writeError(w, http.StatusBadRequest, "reading body: "+err.Error())
		}
		return nil, release, false
	}
	// The next request on the connection gets net/http's own deadlines.
	_ = br.rc.SetReadDeadline(time.Time{})
	return body, release, true
}

const (
	// firstBodyBuffer bounds the buffer a body starts with, whatever its
	// Content-Length claims: a claim alone must not hold memory (or
	// budget) that the client has not sent.
	firstBodyBuffer = 64 << 10
	// budgetWait is the longest a body waits for budget before it is
	// answered 503. Bodies hold budget while they wait for more, so the
	// wait must end: otherwise bodies that together want more than the
	// budget would each hold part of it and wait for good.
	budgetWait = 2 * time.Second
)

// errNoBudget: the bodies being read hold the whole budget.
var errNoBudget = errors.New("the node is reading as many submission bytes as it holds at once; retry")

// bodyReader reads a body into a buffer whose every byte of capacity it
// first takes from the budget, and moves the connection's read deadline
// before each read so that the body keeps an average of MinBodyRate after
// the grace and is whole within maxTime. Time spent waiting for the budget
// is not the client's: the deadlines move by it.
type bodyReader struct {
	r       io.Reader
	rc      *http.ResponseController
	ctx     context.Context
	budget  *semaphore.Weighted
	limit   int64 // the body's limit in bytes
	start   time.Time
	grace   time.Duration
	maxTime time.Duration
	n       int64 // bytes read so far
	held    int64 // bytes taken from the budget
}

// take takes n bytes of the budget, waiting at most budgetWait.
func (b *bodyReader) take(n int64) error {
	if !b.budget.TryAcquire(n) {
		waitStart := time.Now()
		ctx, cancel := context.WithTimeout(b.ctx, budgetWait)
		err := b.budget.Acquire(ctx, n)
		cancel()
		if err != nil {
			return errNoBudget
		}
		b.start = b.start.Add(time.Since(waitStart))
	}
	b.held += n
	return nil
}

// readAll reads the body to its end. hint, the Content-Length (or -1),
// sizes the first buffer up to firstBodyBuffer; the buffer then doubles as
// the body arrives, up to one byte over the limit.
func (b *bodyReader) readAll(hint int64) ([]byte, error) {
	size := min(max(hint, 512), b.limit, firstBodyBuffer) + 1 // one byte more: reading the end needs no growth
	if err := b.take(size); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			grown := min(2*int64(cap(buf)), b.limit+1)
			if hint >= int64(cap(buf)) { // net/http delivers no more than Content-Length
				grown = min(grown, hint+1)
			}
			if grown == int64(cap(buf)) { // the limit reader stops before this
				return nil, &http.MaxBytesError{Limit: b.limit}
			}
			if err := b.take(grown - int64(cap(buf))); err != nil {
				return nil, err
			}
			buf = append(make([]byte, 0, grown), buf...)
		}
		deadline := b.start.Add(b.grace + time.Duration(b.n)*time.Second/MinBodyRate)
		if whole := b.start.Add(b.maxTime); whole.Before(deadline) {
			deadline = whole
		}
		_ = b.rc.SetReadDeadline(deadline)
		n, err := b.r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		b.n += int64(n)
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// readSubmission reads one submission. Like a batch (see submitBatch), it
// is decoded with goccy/go-json first; only a body that fails is decoded
// again, afresh, with encoding/json, whose reason the client gets.
func (s *Server) readSubmission(w http.ResponseWriter, r *http.Request) (Submission, bool) {
	body, release, ok := s.readRaw(w, r, 1)
	defer release() // the decoded submission holds copies
	if !ok {
		return Submission{}, false
	}
	if err := errNotUTF8(body); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return Submission{}, false
	}
	var sub Submission
	if gojson.Unmarshal(body, &sub) == nil {
		return sub, true
	}
	sub = Submission{}
	if err := json.Unmarshal(body, &sub); err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON: "+err.Error())
		return Submission{}, false
	}
	return sub, true
}

func (s *Server) submitOne(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Submitter == nil {
		s.forwardToLeader(w, r, 1)
		return
	}
	sub, ok := s.readSubmission(w, r)
	if !ok {
		return
	}
	m, err := sub.ToChain()
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	_, errs := s.cfg.Submitter.Submit([]chain.Message{m})
	if err := errs[0]; err != nil {
		code := statusOf(err)
		body := errorBody{Error: err.Error()}
		if code == http.StatusConflict {
			id := m.ID()
			body.ID = &id
		}
		switch code {
		case http.StatusInternalServerError:
			s.cfg.Log.Error("submit failed", "err", err)
		case http.StatusServiceUnavailable: // the queue is full: a block will make room
			w.Header().Set("Retry-After", "1")
		}
		writeJSON(w, code, body)
		return
	}
	writeJSON(w, http.StatusAccepted, Accepted{ID: m.ID(), Status: StatusPending})
}

func (s *Server) submitBatch(w http.ResponseWriter, r *http.Request) {
	body, release, ok := s.readRaw(w, r, MaxBatch)
	defer release()
	if !ok {
		return
	}
	if s.cfg.Submitter == nil {
		// The leader judges it under its own slots and limits.
		s.forwardBody(w, r, body, release)
		return
	}
	// Judging is bounded, so the wait for a slot is too.
	select {
	case s.batches <- struct{}{}:
	case <-s.intake.Done():
		writeError(w, http.StatusServiceUnavailable, errStopping)
		return
	}
	slot := sync.OnceFunc(func() { <-s.batches })
	defer slot() // should judging panic
	results, code, reason := s.judgeBatch(body)
	// The slot and the body's budget are given back before the answer is
	// written: a client that does not read its answers holds neither.
	slot()
	release()
	s.answerDeadline(w)
	if code != 0 {
		writeError(w, code, reason)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Results []Result `json:"results"`
	}{results})
}

// DefaultAnswerTimeout: a client that does not take an answer within it
// is dropped.
const DefaultAnswerTimeout = 30 * time.Second

// answerDeadline sets the answer's write deadline, which holds through the
// flush after the handler returns; net/http lifts it once the response is
// finished, before the next request on the connection.
func (s *Server) answerDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.AnswerTimeout))
}

// judgeBatch decodes a batch body and submits its valid messages; it
// returns the result of each, or the status and reason for refusing the
// body as a whole (code non-zero).
func (s *Server) judgeBatch(body []byte) (results []Result, code int, reason string) {
	if n := batchValues(body); n > 0 {
		return nil, http.StatusBadRequest, fmt.Sprintf("%d messages, at most %d", n, MaxBatch)
	}
	var req struct {
		Messages []json.RawMessage `json:"messages"`
	}
	// Fast path: a well-typed batch decodes in one pass, with goccy/go-json
	// (an encoding/json work-alike at about half its cost; JSON was a tenth
	// of the leader's CPU under batch load). Only when that fails is the
	// body decoded with encoding/json, each element on its own, so that a
	// bad element alone is refused, with encoding/json's reason.
	var typed struct {
		Messages []Submission `json:"messages"`
	}
	// A body that is not UTF-8 takes the slow path, where each element is
	// checked on its own (the decoders would replace each bad byte).
	if err := errNotUTF8(body); err != nil || gojson.Unmarshal(body, &typed) != nil {
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, http.StatusBadRequest, "malformed JSON: " + err.Error()
		}
		typed.Messages = nil
	} else if typed.Messages != nil {
		req.Messages = make([]json.RawMessage, len(typed.Messages))
	}
	if req.Messages == nil {
		return nil, http.StatusBadRequest, "missing field: messages"
	}
	if len(req.Messages) > MaxBatch {
		return nil, http.StatusBadRequest, fmt.Sprintf("%d messages, at most %d", len(req.Messages), MaxBatch)
	}
	results = make([]Result, len(req.Messages))
	msgs := make([]chain.Message, 0, len(req.Messages))
	at := make([]int, 0, len(req.Messages)) // at[j]: the index in the request of msgs[j]
	for i, raw := range req.Messages {
		var sub Submission
		var m chain.Message
		var err error
		if typed.Messages != nil {
			sub = typed.Messages[i]
		} else if err = errNotUTF8(raw); err == nil {
			err = json.Unmarshal(raw, &sub)
		}
		if err == nil {
			m, err = sub.ToChain()
		}
		if err != nil {
			results[i] = Result{Error: err.Error(), Code: http.StatusBadRequest}
			continue
		}
		msgs = append(msgs, m)
		at = append(at, i)
	}
	if len(msgs) > 0 {
		_, errs := s.cfg.Submitter.Submit(msgs)
		for j, err := range errs {
			id := msgs[j].ID()
			if err != nil {
				results[at[j]] = Result{ID: &id, Error: err.Error(), Code: statusOf(err)}
			} else {
				results[at[j]] = Result{ID: &id, Status: StatusPending}
			}
		}
	}
	return results, 0, ""
}

// errStopping answers requests still waiting when intake ends.
const errStopping = "the node is stopping"

// StopIntake answers 503 to the requests waiting for a batch or listing
// slot, now and from now on, for a node that begins to stop: the batches
// and listings already under way finish.
func (s *Server) StopIntake() { s.endIntake() }

// Stop ends the work of requests still running, for a node that stops:
// requests waiting for a slot, and forwards and fetches waiting for the
// leader, are answered 503, and idle connections to the leader are closed.
func (s *Server) Stop() {
	s.endWork()
	s.forward.CloseIdleConnections()
}

// errNotUTF8 refuses JSON text that is not UTF-8. The decoders would
// replace each bad byte with U+FFFD, three bytes, and judge content the
// client never sent (413 for content within the limit).
func errNotUTF8(b []byte) error {
	if utf8.Valid(b) {
		return nil
	}
	return fmt.Errorf("%w: the JSON text is not UTF-8", chain.ErrBadContent)
}

// forwardToLeader reads a submission of at most n messages, under the same
// limits as on the leader, and forwards it with forwardBody.
func (s *Server) forwardToLeader(w http.ResponseWriter, r *http.Request, n int) {
	body, release, ok := s.readRaw(w, r, n)
	defer release()
	if !ok {
		return
	}
	s.forwardBody(w, r, body, release)
}

// maxForwardAnswer bounds the leader's answer to a forwarded submission:
// the answer to a batch of MaxBatch is far smaller.
const maxForwardAnswer = 4 << 20

// forwardBody passes a submission body to the leader as it is and returns
// the leader's status and body; 503 when the leader cannot be reached, 502
// when its answer cannot be read. The answer is read whole, under the
// forwarding timeout, before any of it is written, so the timeout bounds
// the exchange with the leader and never a slow client's reading. Once the
// leader has answered, the body is no longer needed: release gives its
// budget back before the answer is written.
func (s *Server) forwardBody(w http.ResponseWriter, r *http.Request, body []byte, release func()) {
	if s.cfg.LeaderURL == "" {
		writeError(w, http.StatusServiceUnavailable, "this node takes no submissions")
		return
	}
	req, err := http.NewRequestWithContext(s.work, http.MethodPost, strings.TrimRight(s.cfg.LeaderURL, "/")+r.URL.Path, bytes.NewReader(body))
	if err != nil {
		s.fail(w, err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.forward.Do(req)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "leader unreachable: "+err.Error())
		return
	}
	answer, err := readAnswer("POST "+r.URL.Path, resp, maxForwardAnswer)
	_ = resp.Body.Close()
	release()
	s.answerDeadline(w)
	if err != nil {
		writeError(w, http.StatusBadGateway, "bad answer from the leader: "+err.Error())
		return
	}
	for _, h := range []string{"Content-Type", "Retry-After"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}
