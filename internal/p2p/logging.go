package p2p

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/gologshim"
)

// noisyPubsubMessages are pubsub warnings that say nothing actionable. Pubsub
// bumps a connection-manager tag for every message delivered, through a
// queue of 128, and warns for each bump that finds the queue full, which
// any burst of blocks does. The tag only ranks peers for trimming; peers
// that matter are protected by Connect. Dropped gossip messages themselves
// are reported by dropTracer.
var noisyPubsubMessages = map[string]bool{
	"error bumping delivery tag": true,
}

// noisyLibp2pMessages are libp2p errors that only repeat an error New
// returns: the dependency-injection framework (fx) inside libp2p.New logs
// each start failure, such as a listen port in use, three times over before
// libp2p.New returns it.
var noisyLibp2pMessages = map[string]bool{
	"OnStart hook failed":        true,
	"start failed, rolling back": true,
	"start failed":               true,
}

// libp2pLogFloor is the lowest of libp2p's own levels that reaches the
// node's log, whatever the node's level: at debug and info libp2p describes
// every dial, stream and dependency it wires up, which would bury the node's
// own debug lines. Its warnings and errors pass, subject to the node's level.
const libp2pLogFloor = slog.LevelWarn

// demoteHandler passes a library's log records on to next, dropping those
// the library logged below floor and lowering the noisy ones to debug.
type demoteHandler struct {
	next  slog.Handler
	noisy map[string]bool
	floor slog.Level
}

func (h demoteHandler) Enabled(ctx context.Context, l slog.Level) bool {
	// Demotion only lowers a level, so a record next takes at debug it takes
	// at l too.
	return l >= h.floor && h.next.Enabled(ctx, l)
}

func (h demoteHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < h.floor {
		return nil
	}
	if h.noisy[r.Message] && r.Level > slog.LevelDebug {
		r = r.Clone()
		r.Level = slog.LevelDebug
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h demoteHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return demoteHandler{h.next.WithAttrs(attrs), h.noisy, h.floor}
}

func (h demoteHandler) WithGroup(name string) slog.Handler {
	return demoteHandler{h.next.WithGroup(name), h.noisy, h.floor}
}

// libp2pLogs receives everything go-libp2p logs itself. Its loggers are
// package variables, shared by every host in the process, and each takes
// its handler from gologshim once, at its first use; left alone they write
// logfmt to stderr at a level set only by GOLOG_LOG_LEVEL, whatever the
// node's log format and level. So gologshim's default handler is set once,
// at package initialization, before any libp2p logger can be used, to a
// handler that forwards to whichever destination New last installed (see
// logSink.install). Only a logger used while an earlier package initializes
// escapes it: with LIBP2P_TCP_REUSEPORT=false in the environment, go-libp2p's
// "tcp-demultiplex" logger is, and keeps writing to stderr.
var libp2pLogs = &logSink{}

func init() {
	gologshim.SetDefaultHandler(sinkHandler{sink: libp2pLogs})
}

// logSink holds the destinations New installed and that are still in use,
// latest last. Records go to the latest, or are discarded when none is.
type logSink struct {
	mu    sync.Mutex
	dests []*slog.Handler // by pointer, so equal handlers stay distinct
	cur   atomic.Pointer[slog.Handler]
}

// install makes h the destination of libp2p's records until remove is
// called, or until another install, after whose removal h is the
// destination again. remove is idempotent.
func (s *logSink) install(h slog.Handler) (remove func()) {
	d := &h
	s.mu.Lock()
	s.dests = append(s.dests, d)
	s.cur.Store(d)
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for i, x := range s.dests {
				if x == d {
					s.dests = append(s.dests[:i], s.dests[i+1:]...)
					break
				}
			}
			if n := len(s.dests); n > 0 {
				s.cur.Store(s.dests[n-1])
			} else {
				s.cur.Store(nil)
			}
		})
	}
}

// current is the destination now, nil when there is none.
func (s *logSink) current() slog.Handler {
	if d := s.cur.Load(); d != nil {
		return *d
	}
	return nil
}

// sinkHandler is the handler gologshim gives every libp2p logger. It keeps
// the attributes and groups its loggers add and applies them to the
// destination current when a record is handled, since a logger keeps the
// handler it derived for good, across destinations.
type sinkHandler struct {
	sink *logSink
	with []func(slog.Handler) slog.Handler // WithAttrs and WithGroup calls, in order
}

func (h sinkHandler) Enabled(ctx context.Context, l slog.Level) bool {
	d := h.sink.current()
	return d != nil && d.Enabled(ctx, l)
}

func (h sinkHandler) Handle(ctx context.Context, r slog.Record) error {
	d := h.sink.current()
	if d == nil {
		return nil
	}
	// The destination may have changed since Enabled; demoteHandler checks
	// levels again.
	for _, f := range h.with {
		d = f(d)
	}
	return d.Handle(ctx, r)
}

func (h sinkHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.and(func(d slog.Handler) slog.Handler { return d.WithAttrs(attrs) })
}

func (h sinkHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.and(func(d slog.Handler) slog.Handler { return d.WithGroup(name) })
}

func (h sinkHandler) and(f func(slog.Handler) slog.Handler) sinkHandler {
	with := make([]func(slog.Handler) slog.Handler, len(h.with), len(h.with)+1)
	copy(with, h.with)
	return sinkHandler{sink: h.sink, with: append(with, f)}
}
