package p2p_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/kimura-ledger/kimura/internal/p2p"
)

// Environment of the child process TestLibp2pLogsUseNodeLogger runs.
const (
	logChildLevel = "KIMURA_P2P_TEST_LOG_LEVEL" // the node's log level
	logChildOut   = "KIMURA_P2P_TEST_LOG_OUT"   // file for the node's JSON log
)

// libp2p's own log lines go through Config.Logger, in its format and at its
// level, never straight to stderr, and its debug chatter never. Each case
// runs in a child process, which alone sees everything written to its
// stderr and in which no libp2p logger has picked a handler yet. The child
// starts a host on a port in use, on which libp2p logs a warning and a few
// errors before New fails, as a node given a busy --listen-addr does.
func TestLibp2pLogsUseNodeLogger(t *testing.T) {
	if level := os.Getenv(logChildLevel); level != "" {
		libp2pLogChild(level, os.Getenv(logChildOut))
		return
	}
	if testing.Short() {
		t.Skip("runs a child process")
	}
	for _, tc := range []struct {
		level string
		want  map[string]string // libp2p records the node's log must hold: message to level
	}{
		// The brief's case: --log-format json --log-level error. The errors
		// libp2p logs only repeat New's error, so they are lowered to debug.
		{"ERROR", nil},
		{"DEBUG", map[string]string{
			"listening failed":           "WARN",
			"OnStart hook failed":        "DEBUG",
			"start failed, rolling back": "DEBUG",
			"start failed":               "DEBUG",
		}},
	} {
		t.Run(tc.level, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "log.json")
			cmd := exec.Command(os.Args[0], "-test.run=^TestLibp2pLogsUseNodeLogger$")
			cmd.Env = append(os.Environ(),
				logChildLevel+"="+tc.level,
				logChildOut+"="+out,
				"GOCOVERDIR="+t.TempDir(), // else a -cover binary warns on stderr
			)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
			}
			if stderr.Len() > 0 {
				t.Errorf("written to stderr, not through the node's logger:\n%s", &stderr)
			}
			if stdout.String() != "ok\n" {
				t.Errorf("child stdout:\n%s", &stdout)
			}
			got := map[string]string{}
			for _, r := range readJSONLog(t, out) {
				if r["subsystem"] != "libp2p" {
					continue
				}
				msg, _ := r["msg"].(string)
				level, _ := r["level"].(string)
				t.Logf("libp2p record: %v", r)
				if r["component"] != "p2p" || r["logger"] == nil {
					t.Errorf("record lacks component=p2p or libp2p's logger name: %v", r)
				}
				if want, ok := tc.want[msg]; !ok || want != level {
					t.Errorf("unexpected libp2p record at %s: %v", level, r)
				}
				got[msg] = level
			}
			for msg, level := range tc.want {
				if got[msg] != level {
					t.Errorf("libp2p record %q at %s missing from the node's log", msg, level)
				}
			}
		})
	}
}

// libp2pLogChild is the child's side: a host with a JSON logger at level
// writing to path, on a port in use. It exits the process, skipping the
// leak check: libp2p.New leaves goroutines behind when it fails.
func libp2pLogChild(level, path string) {
	fail := func(err error) {
		fmt.Println("child:", err)
		os.Exit(1)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		fail(err)
	}
	f, err := os.Create(path)
	if err != nil {
		fail(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		fail(err)
	}
	h, err := p2p.New(context.Background(), p2p.Config{
		Key:        key,
		ListenAddr: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", ln.Addr().(*net.TCPAddr).Port),
		Logger:     slog.New(slog.NewJSONHandler(f, &slog.HandlerOptions{Level: lvl})),
	})
	runtime.KeepAlive(ln) // else its finalizer may free the port
	if err == nil {
		_ = h.Close()
		fail(fmt.Errorf("host started on a port in use"))
	}
	if err := f.Close(); err != nil {
		fail(err)
	}
	fmt.Println("ok")
	os.Exit(0)
}

func readJSONLog(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
