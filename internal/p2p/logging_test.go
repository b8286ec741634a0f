package p2p

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// libp2p's own records below the floor never reach the node's log, even at
// debug; those above pass subject to the node's level, and the ones that
// repeat New's error are lowered to debug.
func TestDemoteHandlerFloor(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		want  []string
		not   []string
	}{
		{slog.LevelDebug,
			[]string{`level=WARN msg="listening failed"`, `level=ERROR msg=broken`, `level=DEBUG msg="start failed"`},
			[]string{"dialing", "identified"}},
		{slog.LevelError,
			[]string{`level=ERROR msg=broken`},
			[]string{"dialing", "identified", "listening failed", "start failed"}},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			var buf bytes.Buffer
			h := demoteHandler{
				next:  slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}),
				noisy: noisyLibp2pMessages,
				floor: libp2pLogFloor,
			}
			log := slog.New(h)
			log.Debug("dialing")
			log.Info("identified")
			log.Warn("listening failed")
			log.Error("broken")
			log.Error("start failed")
			// Handle called without Enabled, as sinkHandler may.
			_ = h.Handle(context.Background(), slog.NewRecord(time.Time{}, slog.LevelInfo, "identified", 0))
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("missing %s in:\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("%q passed:\n%s", n, out)
				}
			}
		})
	}
}

// Records go to the destination installed last of those not yet removed,
// with the attributes and groups the logger added, whichever destination
// was current when it added them; with none installed they are dropped.
func TestLogSinkFollowsLatestDestination(t *testing.T) {
	var sink logSink
	var a, b bytes.Buffer
	text := func(buf *bytes.Buffer) slog.Handler {
		return slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	log := slog.New(sinkHandler{sink: &sink}).With("logger", "swarm2").WithGroup("g")

	log.Info("before any")
	removeA := sink.install(text(&a))
	log.Info("to a", "k", 1)
	removeB := sink.install(text(&b))
	log.Info("to b")
	log.Debug("below b's level")
	removeB()
	removeB() // idempotent: must not remove a
	log.Info("a again")
	removeA()
	log.Info("after all")

	wantA := "level=INFO msg=\"to a\" logger=swarm2 g.k=1\nlevel=INFO msg=\"a again\" logger=swarm2\n"
	wantB := "level=INFO msg=\"to b\" logger=swarm2\n"
	if got := stripTime(a.String()); got != wantA {
		t.Errorf("a got:\n%s\nwant:\n%s", got, wantA)
	}
	if got := stripTime(b.String()); got != wantB {
		t.Errorf("b got:\n%s\nwant:\n%s", got, wantB)
	}
	if sink.current() != nil || len(sink.dests) != 0 {
		t.Errorf("destinations left after removing all: %d", len(sink.dests))
	}
}

func stripTime(s string) string {
	var out strings.Builder
	for line := range strings.Lines(s) {
		if _, rest, ok := strings.Cut(line, " "); ok && strings.HasPrefix(line, "time=") {
			line = rest
		}
		out.WriteString(line)
	}
	return out.String()
}
