package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kimura-ledger/kimura/internal/api"
)

// Process timing.
const (
	// startTimeout bounds a node's start up to its first healthy /health;
	// a long chain is verified first, so it is generous.
	startTimeout = 5 * time.Minute
	// stopTimeout is how long a graceful stop may take before the node is
	// killed (SPEC: a node stops within 5 s).
	stopTimeout = 10 * time.Second
	// healthPoll is how often a starting node's /health is tried. It is
	// short because exec to healthy is itself a measured figure.
	healthPoll = 2 * time.Millisecond
	// tailLines is how much of a node's log is kept in memory for errors.
	tailLines = 40
)

// Supervisor owns every node process and temporary directory of a run.
// Close kills the nodes still running and removes the directories; call it
// on every path out, including an interrupt. Its methods are safe for
// concurrent use.
type Supervisor struct {
	nodeBin  string
	selfBin  string // this executable, which runs the bare endpoint as a child
	root     string // every directory of the run is under it
	keep     bool
	progress io.Writer

	mu     sync.Mutex
	nodes  []*Node
	count  int
	closed bool
}

// NewSupervisor checks that nodeBin is an executable file and makes the
// run's temporary root directory. With keep, Close leaves the directories
// (data and node logs) in place and says where.
func NewSupervisor(nodeBin string, keep bool, progress io.Writer) (*Supervisor, error) {
	fi, err := os.Stat(nodeBin)
	if err != nil {
		return nil, fmt.Errorf("bench: kimura-node: %w", err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("bench: %s is not an executable file", nodeBin)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: locate this executable: %w", err)
	}
	root, err := os.MkdirTemp("", "kimura-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: temporary directory: %w", err)
	}
	if progress == nil {
		progress = io.Discard
	}
	return &Supervisor{nodeBin: nodeBin, selfBin: self, root: root, keep: keep, progress: progress}, nil
}

// NodeBin is the kimura-node binary the supervisor runs.
func (s *Supervisor) NodeBin() string { return s.nodeBin }

// Progressf writes one line of progress.
func (s *Supervisor) Progressf(format string, args ...any) {
	fmt.Fprintf(s.progress, "kimura-bench: "+format+"\n", args...)
}

// TempDir makes a new directory under the run's root.
func (s *Supervisor) TempDir(name string) (string, error) {
	dir, err := os.MkdirTemp(s.root, name+"-")
	if err != nil {
		return "", fmt.Errorf("bench: temporary directory: %w", err)
	}
	return dir, nil
}

// Remove deletes a directory made by TempDir, unless the run keeps them.
func (s *Supervisor) Remove(dir string) {
	if !s.keep && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		_ = os.RemoveAll(dir)
	}
}

// Close kills every node still running and removes the run's directories.
func (s *Supervisor) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	nodes := s.nodes
	s.nodes = nil
	s.mu.Unlock()
	for _, n := range nodes {
		n.Kill()
	}
	if s.keep {
		s.Progressf("kept data directories and node logs in %s", s.root)
		return
	}
	_ = os.RemoveAll(s.root)
}

// NodeSpec says how to start a node.
type NodeSpec struct {
	Name   string   // for logs and errors, e.g. "leader", "peer2"
	DBPath string   // data directory; a new temporary one when empty
	Args   []string // after the address and --db-path flags
	// Bare runs the bare endpoint (BareMain, in this executable) instead
	// of kimura-node.
	Bare bool
	// OnLine, when set, is called from the log reader with every log line,
	// in order. It must not block for long: the node blocks on a full pipe.
	OnLine func(*LogLine)
}

// Node is a running kimura-node process.
type Node struct {
	Name    string
	DBPath  string
	URL     string    // http://127.0.0.1:PORT once ready
	Exec    time.Time // just before the process was started
	Healthy time.Time // the first 200 from GET /health
	Client  *api.Client

	sup    *Supervisor
	cmd    *exec.Cmd
	done   chan struct{} // closed once the process has exited and its log is read
	addr   chan string   // the address of the "Serving HTTP API" line, once
	online func(*LogLine)

	mu       sync.Mutex
	tail     []string
	exitErr  error
	peakRSS  int64 // bytes, read just before a stop
	verified *LogLine
}

// Start launches a node with
//
//	--rpc-addr 127.0.0.1:0 --listen-addr /ip4/127.0.0.1/tcp/0 --db-path DIR ARGS...
//
// and waits until it logs its HTTP address and answers GET /health with 200.
// Its log goes to DIR/../NAME.log beside the data directory.
func (s *Supervisor) Start(ctx context.Context, spec NodeSpec) (*Node, error) {
	n, err := s.Launch(spec)
	if err != nil {
		return nil, err
	}
	if err := n.WaitHealthy(ctx); err != nil {
		n.Kill()
		return nil, err
	}
	return n, nil
}

// Launch starts a node as Start does without waiting for it to be ready.
func (s *Supervisor) Launch(spec NodeSpec) (*Node, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errors.New("bench: supervisor closed")
	}
	s.count++
	seq := s.count
	s.mu.Unlock()
	if spec.Name == "" {
		spec.Name = fmt.Sprintf("node%d", seq)
	}
	db := spec.DBPath
	if db == "" {
		var err error
		if db, err = s.TempDir(spec.Name); err != nil {
			return nil, err
		}
	}
	logFile, err := os.Create(filepath.Join(s.root, fmt.Sprintf("%s-%d.log", spec.Name, seq)))
	if err != nil {
		return nil, fmt.Errorf("bench: node log: %w", err)
	}
	args := append([]string{"--rpc-addr", "127.0.0.1:0", "--listen-addr", "/ip4/127.0.0.1/tcp/0", "--db-path", db}, spec.Args...)
	bin := s.nodeBin
	if spec.Bare {
		bin = s.selfBin
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.root
	if spec.Bare {
		cmd.Env = append(os.Environ(), BareChildEnv+"=1")
	}
	cmd.Stdout = logFile
	cmd.SysProcAttr = sysProcAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	n := &Node{
		Name: spec.Name, DBPath: db, sup: s, cmd: cmd, online: spec.OnLine,
		done: make(chan struct{}), addr: make(chan string, 1),
	}
	n.Exec = time.Now()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("bench: start %s: %w", bin, err)
	}
	s.mu.Lock()
	s.nodes = append(s.nodes, n)
	s.mu.Unlock()
	go n.read(stderr, logFile)
	return n, nil
}

// read consumes the node's log until the process ends, then reaps it.
func (n *Node) read(r io.Reader, logFile *os.File) {
	defer close(n.done)
	defer logFile.Close()
	w := bufio.NewWriterSize(logFile, 64<<10)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	sentAddr := false
	for sc.Scan() {
		raw := sc.Text()
		_, _ = w.WriteString(raw)
		_ = w.WriteByte('\n')
		l := ParseLogLine(raw)
		l.Arrived = time.Now()
		n.mu.Lock()
		if len(n.tail) == tailLines {
			n.tail = n.tail[1:]
		}
		n.tail = append(n.tail, raw)
		if _, _, ok := l.ChainVerified(); ok {
			n.verified = &l
		}
		n.mu.Unlock()
		if !sentAddr && l.Msg == "Serving HTTP API" {
			sentAddr = true
			n.addr <- l.Attrs["addr"]
		}
		if n.online != nil {
			n.online(&l)
		}
	}
	// A line longer than the buffer stops the scan: drain so the node never blocks.
	_, _ = io.Copy(w, r)
	_ = w.Flush()
	err := n.cmd.Wait()
	n.mu.Lock()
	n.exitErr = err
	n.mu.Unlock()
}

// WaitHealthy waits for the node's "Serving HTTP API" line, then polls GET
// /health until it answers 200, and records when (Healthy).
func (n *Node) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	select {
	case a := <-n.addr:
		if !strings.HasPrefix(a, "127.0.0.1:") {
			return fmt.Errorf("bench: %s serves on %q, want 127.0.0.1", n.Name, a)
		}
		n.URL = "http://" + a
	case <-n.done:
		return n.exitedError("before serving")
	case <-ctx.Done():
		return fmt.Errorf("bench: %s did not log \"Serving HTTP API\": %w%s", n.Name, ctx.Err(), n.tailText())
	}
	n.Client = api.NewClient(n.URL)
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()
	for {
		resp, err := hc.Get(n.URL + "/health")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				n.Healthy = time.Now()
				return nil
			}
		}
		select {
		case <-n.done:
			return n.exitedError("before answering /health")
		case <-ctx.Done():
			return fmt.Errorf("bench: %s: GET /health not OK: %w", n.Name, ctx.Err())
		case <-time.After(healthPoll):
		}
	}
}

func (n *Node) exitedError(when string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Errorf("bench: %s exited %s (%v)%s", n.Name, when, n.exitErr, n.tailTextLocked())
}

func (n *Node) tailText() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tailTextLocked()
}

func (n *Node) tailTextLocked() string {
	if len(n.tail) == 0 {
		return ""
	}
	return "; its last log lines:\n  " + strings.Join(n.tail, "\n  ")
}

// Verified returns the node's "Chain integrity verified" line, if logged.
func (n *Node) Verified() (*LogLine, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.verified, n.verified != nil
}

// Exited reports whether the process has ended.
func (n *Node) Exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// PeakRSS is the node's peak resident set (VmHWM) in bytes as last read, by
// SampleRSS or at Stop; zero when it could not be read.
func (n *Node) PeakRSS() int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peakRSS
}

// SampleRSS reads the running node's peak resident set size (VmHWM) now,
// keeps it for PeakRSS and returns it; zero when it cannot be read.
func (n *Node) SampleRSS() int64 {
	rss, err := peakRSS(n.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.peakRSS = rss
	return rss
}

// CPUTime is the CPU time (user and system) the running node has used
// since it started; zero when it cannot be read.
func (n *Node) CPUTime() time.Duration {
	d, err := cpuTime(n.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	return d
}

// Stop records the node's peak RSS, then stops it with SIGTERM, waits for it
// to exit and checks that it exited with 0. A node that does not stop in
// time is killed and that is an error.
func (n *Node) Stop() error {
	if n.Exited() {
		return n.exitedError("before it was stopped")
	}
	n.SampleRSS()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(stopTimeout):
		n.Kill()
		return fmt.Errorf("bench: %s did not stop within %v of SIGTERM; killed%s", n.Name, stopTimeout, n.tailText())
	}
	n.sup.forget(n)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exitErr != nil {
		return fmt.Errorf("bench: %s stopped with %v%s", n.Name, n.exitErr, n.tailTextLocked())
	}
	return nil
}

// Kill ends the node with SIGKILL, if still running, and waits for it.
func (n *Node) Kill() {
	if !n.Exited() {
		_ = n.cmd.Process.Kill()
	}
	<-n.done
	n.sup.forget(n)
}

func (s *Supervisor) forget(n *Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range s.nodes {
		if m == n {
			s.nodes = append(s.nodes[:i], s.nodes[i+1:]...)
			return
		}
	}
}
