package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// signalChildEnv, set to "1", makes the test binary run signalChild.
const signalChildEnv = "KIMURA_BENCH_SIGNAL_CHILD"

// signalChild stands for a run whose cleanup hangs: it says "ready",
// waits for interruptContext to be done, says "interrupted by" and the
// signal, and then never ends by itself.
func signalChild() {
	ctx, _ := interruptContext()
	fmt.Println("ready")
	<-ctx.Done()
	fmt.Println("interrupted by", context.Cause(ctx))
	time.Sleep(time.Minute)
	os.Exit(0)
}

// The first SIGINT, SIGTERM or SIGHUP interrupts a run (SIGHUP too: a
// closed terminal must not leave nodes running); a second one kills the
// tool as if it had no handler, so a cleanup that hangs cannot keep it.
func TestSecondSignalKills(t *testing.T) {
	const second = syscall.SIGINT
	for _, first := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM} {
		t.Run(first.String(), func(t *testing.T) {
			// A signal ignored where the test runs (SIGHUP under nohup)
			// would stay ignored in the child: coreutils' env sets all
			// three back to their default before the child starts.
			cmd, lines := startSignalChild(t, "env", "--default-signal=HUP,INT,TERM")
			expectLine(t, cmd, lines, "ready")
			if err := cmd.Process.Signal(first); err != nil {
				t.Fatal(err)
			}
			expectLine(t, cmd, lines, "interrupted by "+first.String()+" signal received")
			exited := make(chan error, 1)
			go func() {
				for lines.Scan() {
				}
				exited <- cmd.Wait()
			}()
			// The handler goes just after the context is done: signal
			// until the child dies, for at most 5 s.
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			deadline := time.After(5 * time.Second)
			for {
				select {
				case err := <-exited:
					var ee *exec.ExitError
					if !errors.As(err, &ee) {
						t.Fatalf("child exited with %v, want killed by %v", err, second)
					}
					if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != second {
						t.Fatalf("child ended with %v, want killed by %v", err, second)
					}
					return
				case <-tick.C:
					_ = cmd.Process.Signal(second)
				case <-deadline:
					t.Fatalf("child still running 5 s after a second %v", second)
				}
			}
		})
	}
}

// A run started with SIGHUP ignored, as under nohup, is not interrupted
// by a SIGHUP: catching it would undo the ignoring, and a long run under
// nohup must outlive the terminal it was started from. SIGTERM still
// interrupts it.
func TestIgnoredHangupStaysIgnored(t *testing.T) {
	cmd, lines := startSignalChild(t, "nohup") // coreutils: SIGHUP ignored, then exec
	expectLine(t, cmd, lines, "ready")
	for _, s := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		if err := cmd.Process.Signal(s); err != nil {
			t.Fatal(err)
		}
	}
	// Had the SIGHUP been caught, it would be the one named: it is sent
	// first, and of two signals pending at once the lower-numbered one is
	// delivered (and relayed by Go's runtime) first.
	expectLine(t, cmd, lines, "interrupted by "+syscall.SIGTERM.String()+" signal received")
}

// startSignalChild starts the test binary as signalChild, behind the
// command words before it (such as "nohup"), and returns it with the lines
// of its output; it is killed when the test ends.
func startSignalChild(t *testing.T, before ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	argv := append(before, self)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), signalChildEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

// expectLine fails the test unless the child's next line is want, said
// within 10 s (after which the child is killed, which ends its output).
func expectLine(t *testing.T, cmd *exec.Cmd, lines *bufio.Scanner, want string) {
	t.Helper()
	timer := time.AfterFunc(10*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	if !lines.Scan() || lines.Text() != want {
		t.Fatalf("child said %q (%v), want %q within 10 s", lines.Text(), lines.Err(), want)
	}
}

// `all` runs an open-loop ingest at 10,000 msgs/s in batches of 100 beside
// the defaults: the condition of the inclusion-latency target, which the
// closed-loop ingest never judges. Each scenario has a name of its own,
// since the JSON report is keyed by it.
func TestAllJudgesInclusion(t *testing.T) {
	scenarios, err := parseScenario("all", nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	seen := map[string]bool{}
	for _, s := range scenarios {
		if seen[s.name] {
			t.Errorf("two scenarios named %q", s.name)
		}
		seen[s.name] = true
		names = append(names, s.name)
	}
	if fmt.Sprint(names) != "[ingest ingest-open-loop propagate restart catchup]" {
		t.Errorf("all runs %v", names)
	}
	for _, a := range allScenarios {
		if a.name != "ingest-open-loop" {
			continue
		}
		c, err := parseIngest(a.args)
		if err != nil {
			t.Fatal(err)
		}
		if c.Rate != 10000 || c.Mode != "batch" || c.Batch != 100 || c.Clients != 64 {
			t.Errorf("ingest-open-loop: rate %g, mode %s, batch %d, clients %d; want 10000, batch, 100, 64", c.Rate, c.Mode, c.Batch, c.Clients)
		}
	}
}
