package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
)

// Timing of the harness. Every wait polls with a deadline; nothing sleeps
// as a way to synchronise with a node.
const (
	// readyTimeout bounds a node's start: its "Serving HTTP API" line and
	// then the first 200 from GET /health.
	readyTimeout = 10 * time.Second
	// stopTimeout is how long a graceful stop may take (SPEC: 5s).
	stopTimeout = 5 * time.Second
	// runTimeout bounds a tool run or a start that must fail.
	runTimeout = 20 * time.Second
	// pollInterval is how often the waits look again.
	pollInterval = 10 * time.Millisecond
)

// nodeBin is the kimura-node binary TestMain built for this run.
var nodeBin string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kimura-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "kimura-node")
	start := time.Now()
	if err := buildNode(bin); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	nodeBin = bin
	flag.Parse()
	if testing.Verbose() {
		fmt.Printf("e2e: built kimura-node in %v\n", time.Since(start).Round(time.Millisecond))
	}
	// The tests mostly wait on their nodes rather than compute, so unless
	// -parallel is given they run more at once than GOMAXPROCS.
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", strconv.Itoa(max(8, 2*runtime.GOMAXPROCS(0))))
	}
	return m.Run()
}

// raceBuild: KIMURA_E2E_RACE is set, so the node is built with the race
// detector and runs several times slower.
var raceBuild = os.Getenv("KIMURA_E2E_RACE") != ""

// buildNode builds ./cmd/kimura-node of this module into out, with the race
// detector when raceBuild.
func buildNode(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return errors.New("go env GOMOD: not inside a module")
	}
	// Without a symbol table and DWARF the link takes half the time; panics
	// and race reports still name functions and lines.
	args := []string{"build", "-ldflags=-s -w", "-o", out}
	if raceBuild {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/kimura-node")
	cmd := exec.Command("go", args...)
	cmd.Dir = filepath.Dir(mod)
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, output)
	}
	return nil
}

// logBuffer collects a process's stdout and stderr; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Node is a running kimura-node process started by startNode. Its methods
// may call t.Fatal, so call them from the test's own goroutine; URL, Client,
// DBPath, Logs and HasLog are safe from any goroutine.
type Node struct {
	t      testing.TB
	args   []string // the whole command line after the binary
	dbPath string
	logs   *logBuffer
	cmd    *exec.Cmd

	done     chan struct{} // closed once the process has exited and its output is read
	exitCode int           // valid once done is closed; -1 when killed by a signal

	url    string
	client *api.Client
}

// Matches the address in the node's "Serving HTTP API" line, text or JSON.
var (
	servingText = regexp.MustCompile(`msg="Serving HTTP API" addr=(\S+)`)
	servingJSON = regexp.MustCompile(`"msg":"Serving HTTP API","addr":"([^"]+)"`)
)

// startNode starts kimura-node with
//
//	--listen-addr /ip4/127.0.0.1/tcp/0 --rpc-addr 127.0.0.1:0 --db-path DIR
//
// followed by args, where DIR is a new t.TempDir() unless args hold their
// own --db-path, and --rpc-addr is left out when args give --rpc-port. It
// waits until the node has logged the address of its HTTP API and answers
// GET /health with 200, and fails the test otherwise. When the test ends
// the process is killed if still running, and its log is written to the
// test log if the test failed.
func startNode(t testing.TB, args ...string) *Node {
	t.Helper()
	n := launchNode(t, args...)
	n.waitReady()
	return n
}

// launchNode starts the process as startNode does without waiting for it.
func launchNode(t testing.TB, args ...string) *Node {
	t.Helper()
	db, ok := flagValue(args, "db-path")
	if !ok {
		db = t.TempDir()
	}
	full := []string{"--listen-addr", "/ip4/127.0.0.1/tcp/0"}
	if _, port := flagValue(args, "rpc-port"); !port { // the two may not be given together
		full = append(full, "--rpc-addr", "127.0.0.1:0")
	}
	if !ok {
		full = append(full, "--db-path", db)
	}
	full = append(full, args...)

	n := &Node{t: t, args: full, dbPath: db, logs: &logBuffer{}, done: make(chan struct{})}
	n.cmd = exec.Command(nodeBin, full...)
	n.cmd.Dir = t.TempDir() // a stray relative path lands in the test's own space
	n.cmd.Stdout = n.logs   // the same writer: one pipe, lines in order
	n.cmd.Stderr = n.logs
	n.cmd.SysProcAttr = sysProcAttr()
	n.cmd.Env = nodeEnv()
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start kimura-node: %v", err)
	}
	go func() {
		err := n.cmd.Wait()
		n.exitCode = exitCodeOf(n.cmd, err)
		close(n.done)
	}()
	t.Cleanup(func() {
		if !n.Exited() {
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		logs := n.logs.String()
		if strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("the node reported a data race (%s)", n)
		}
		if t.Failed() {
			t.Logf("log of %s (exit code %d):\n%s", n, n.exitCode, logs)
		}
	})
	return n
}

func (n *Node) String() string { return "kimura-node " + strings.Join(n.args, " ") }

// waitReady waits for the "Serving HTTP API" line, then for GET /health.
func (n *Node) waitReady() {
	t := n.t
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for n.url == "" {
		logs := n.logs.String()
		if m := servingText.FindStringSubmatch(logs); m != nil {
			n.url = "http://" + m[1]
		} else if m := servingJSON.FindStringSubmatch(logs); m != nil {
			n.url = "http://" + m[1]
		} else if n.Exited() {
			t.Fatalf("%s exited with code %d before serving", n, n.exitCode)
		} else if time.Now().After(deadline) {
			t.Fatalf("%s did not log \"Serving HTTP API\" within %v", n, readyTimeout)
		} else {
			time.Sleep(pollInterval)
		}
	}
	if !strings.HasPrefix(n.url, "http://127.0.0.1:") {
		t.Fatalf("%s serves on %s, want 127.0.0.1", n, n.url)
	}
	n.client = api.NewClient(n.url)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, lastErr = n.client.Health(ctx)
		cancel()
		switch {
		case lastErr == nil:
			return
		case n.Exited():
			t.Fatalf("%s exited with code %d before answering /health", n, n.exitCode)
		case time.Now().After(deadline):
			t.Fatalf("%s: GET /health not OK within %v: %v", n, readyTimeout, lastErr)
		}
		time.Sleep(pollInterval)
	}
}

// URL is the base URL of the node's HTTP API, e.g. http://127.0.0.1:41234.
func (n *Node) URL() string { return n.url }

// Client is an API client for the node.
func (n *Node) Client() *api.Client { return n.client }

// DBPath is the node's data directory.
func (n *Node) DBPath() string { return n.dbPath }

// Logs returns everything the node has written to stdout and stderr so far.
func (n *Node) Logs() string { return n.logs.String() }

// HasLog reports whether a line of the log so far contains substr.
func (n *Node) HasLog(substr string) bool { return strings.Contains(n.Logs(), substr) }

// Exited reports whether the process has exited.
func (n *Node) Exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// WaitLog waits until a line of the log contains substr and returns that
// line; it fails the test after timeout or once the node has exited
// without writing it.
func (n *Node) WaitLog(substr string, timeout time.Duration) string {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		exited := n.Exited() // read before the log: an exited node's log is final
		for line := range strings.Lines(n.Logs()) {
			if strings.Contains(line, substr) {
				return strings.TrimRight(line, "\n")
			}
		}
		if exited {
			n.t.Fatalf("%s exited (code %d) without logging %q", n, n.exitCode, substr)
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s did not log %q within %v", n, substr, timeout)
		}
		time.Sleep(pollInterval)
	}
}

// WaitHeight waits until GET /height reports at least h and returns the
// height it reported.
func (n *Node) WaitHeight(h uint64, timeout time.Duration) uint64 {
	n.t.Helper()
	var got uint64
	eventually(n.t, timeout, fmt.Sprintf("height %d", h), func() error {
		if n.Exited() {
			n.t.Fatalf("%s exited with code %d while waiting for height %d", n, n.exitCode, h)
		}
		ht, err := n.client.Height(context.Background())
		if err != nil {
			return err
		}
		if got = ht.Height; got < h {
			return fmt.Errorf("at height %d", got)
		}
		return nil
	})
	return got
}

// Health calls GET /health and fails the test on an error.
func (n *Node) Health() api.Health {
	n.t.Helper()
	h, err := n.client.Health(context.Background())
	if err != nil {
		n.t.Fatalf("%s: GET /health: %v", n, err)
	}
	return h
}

// Stop sends SIGTERM and returns the exit code; it fails the test unless
// the node exits within stopTimeout.
func (n *Node) Stop() int {
	n.t.Helper()
	return n.signalAndWait(syscall.SIGTERM)
}

// Interrupt sends SIGINT and returns the exit code; it fails the test unless
// the node exits within stopTimeout.
func (n *Node) Interrupt() int {
	n.t.Helper()
	return n.signalAndWait(os.Interrupt)
}

func (n *Node) signalAndWait(sig os.Signal) int {
	n.t.Helper()
	if n.Exited() {
		n.t.Fatalf("%s: exited already (code %d) before %v", n, n.exitCode, sig)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatalf("%s: send %v: %v", n, sig, err)
	}
	start := time.Now()
	select {
	case <-n.done:
		return n.exitCode
	case <-time.After(stopTimeout):
		_ = n.cmd.Process.Kill()
		<-n.done
		n.t.Fatalf("%s: did not exit within %v of %v (killed after %v)", n, stopTimeout, sig, time.Since(start).Round(time.Millisecond))
		return -1
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (n *Node) Kill() {
	n.t.Helper()
	if err := n.cmd.Process.Kill(); err != nil && !n.Exited() {
		n.t.Fatalf("%s: kill: %v", n, err)
	}
	<-n.done
}

// ExitCode waits up to timeout for the process to exit by itself and
// returns its exit code.
func (n *Node) ExitCode(timeout time.Duration) int {
	n.t.Helper()
	select {
	case <-n.done:
		return n.exitCode
	case <-time.After(timeout):
		n.t.Fatalf("%s: still running after %v", n, timeout)
		return -1
	}
}

// httpResult is a raw HTTP answer.
type httpResult struct {
	Code   int
	Header http.Header
	Body   []byte
}

// request sends a raw HTTP request to the node and returns the answer.
func (n *Node) request(method, path, contentType string, body []byte) httpResult {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.url+path, rd)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		n.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return httpResult{Code: resp.StatusCode, Header: resp.Header, Body: data}
}

// runBinary runs kimura-node with args to completion, in a fresh working
// directory, and returns its exit code and output. It fails the test if the
// process is still running after runTimeout.
func runBinary(t testing.TB, args ...string) (exitCode int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	var out, errOut logBuffer
	cmd := exec.CommandContext(ctx, nodeBin, args...)
	cmd.Dir = t.TempDir()
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.SysProcAttr = sysProcAttr()
	cmd.Env = nodeEnv()
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("kimura-node %s: still running after %v; stdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), runTimeout, out.String(), errOut.String())
	}
	code := exitCodeOf(cmd, err)
	if code == -1 && err != nil {
		t.Fatalf("kimura-node %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errOut.String()
}

// nodeEnv is the environment of a node process: the test's own, and for a
// race-enabled build no 1s pause at exit (GORACE's default atexit_sleep_ms),
// which would eat into the 5s a graceful stop may take.
func nodeEnv() []string {
	env := os.Environ()
	if os.Getenv("GORACE") == "" {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

// exitCodeOf returns the exit code of a waited-for cmd, -1 if a signal ended it.
func exitCodeOf(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState != nil {
		return cmd.ProcessState.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// flagValue returns the value of --name (or -name) in args, in either the
// "--name value" or the "--name=value" form.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		trimmed := strings.TrimLeft(a, "-")
		if len(trimmed) == len(a) || len(a)-len(trimmed) > 2 {
			continue
		}
		if trimmed == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(trimmed, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// eventually calls cond every pollInterval until it returns nil, and fails
// the test with what cond last said if timeout passes first.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// rebindablePorts hands out ports for a node that a test restarts on the
// same address. A port picked by binding :0 comes from the kernel's
// ephemeral range, where any outgoing connection on the machine may take it
// while the node is down; these come from below that range, where only an
// explicit bind takes a port, and each is handed out once per test binary.
var rebindablePorts struct {
	sync.Mutex
	next int
}

// rebindableAddr returns 127.0.0.1:N for a free port N below the kernel's
// ephemeral port range, when that range leaves room below it, for a node
// that is restarted on the same address.
func rebindableAddr(t testing.TB) string {
	t.Helper()
	low := 32768 // Linux's default start of ip_local_port_range
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	if low <= 11000 {
		// No range below the ephemeral one to speak of (some containers
		// start it at 1024): take an ephemeral port, which an outgoing
		// connection may, rarely, take while the node is down.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		if err := ln.Close(); err != nil {
			t.Fatalf("close %s: %v", addr, err)
		}
		return addr
	}
	rebindablePorts.Lock()
	defer rebindablePorts.Unlock()
	if rebindablePorts.next == 0 {
		// Start at a place of this process's own, so that two test binaries
		// running at once seldom try the same ports.
		rebindablePorts.next = 10000 + os.Getpid()%10000
	}
	for tries := 0; tries < 1000; tries++ {
		port := rebindablePorts.next
		rebindablePorts.next++
		if port >= low {
			rebindablePorts.next = 10000
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken
		}
		if err := ln.Close(); err != nil {
			t.Fatalf("close %s: %v", addr, err)
		}
		return addr
	}
	t.Fatalf("no free port below %d", low)
	return ""
}
