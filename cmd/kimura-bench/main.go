// Command kimura-bench benchmarks kimura-node. It builds nothing: it spawns
// the kimura-node binary it is given (or finds next to itself) on
// 127.0.0.1 in temporary directories, drives and observes it, prints a
// table for people or, with --json, one JSON object for scripts, and
// removes every process and directory it made, also on Ctrl-C.
//
//	kimura-bench [--node PATH] [--runs 3] [--json] [--keep] SCENARIO [scenario flags]
//
// Scenarios: ingest, propagate, restart, catchup, all. See usage below.
//
// Exit codes: 0 when every scenario ran and no invariant broke (a missed
// speed target is reported, not an error); 1 when a scenario could not run,
// did no work (nothing acknowledged or committed, no block of the size it
// times), was interrupted, or an invariant broke (an acknowledged message
// missing from the chain or a message in it twice, a full block short of
// --max-block-messages or that some peer did not receive by gossip, a block
// that never reached a peer); 2 for a bad command line or no kimura-node to
// run. The first SIGINT, SIGTERM or SIGHUP interrupts the run, which stops
// its nodes, removes its directories and prints what it measured; a second
// one kills the tool.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kimura-ledger/kimura/internal/bench"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

const usage = `usage: kimura-bench [--node PATH] [--runs N] [--json] [--keep] SCENARIO [flags]

  --node PATH   the kimura-node binary (default: kimura-node next to kimura-bench)
  --runs N      repetitions of each scenario; the median and min–max are reported (default 3)
  --json        print one JSON object instead of the table
  --keep        keep the temporary data directories and node logs, and say where

scenarios and their flags:
  ingest     --clients 64 --duration 5s --mode single|batch|both --batch 1000
             --rate 0 (msgs/s offered, open loop; 0 = closed loop) --content-bytes 100
             --presign 0 (0 = by duration) --block-interval 0 (0 = --test-mode, 100ms)
             --max-block-messages 0 (node default) --no-bare
  propagate  --peers 3 --duration 5s --rate 15000 --batch 100 --small-blocks 20
             --max-block-messages 10000 --fill-interval 0 (0 = by size) --content-bytes 100
  restart    --blocks 100000 --messages-per-block 10 --build-interval 1ms --content-bytes 100
             --build leader|direct (direct: written in-process with the node's store
             package, minutes rather than half an hour for 1,000,000 blocks)
             --chain DIR (measure a stopped node's data directory instead; kept)
  catchup    the same flags as restart, with --blocks 10000
  all        every scenario above with its defaults, and ingest-open-loop: ingest
             --mode batch --batch 100 --rate 10000 --no-bare, where the inclusion
             latency target is judged

build both binaries first: go build -o bin/ ./cmd/...
`

func main() {
	if os.Getenv(bench.BareChildEnv) == "1" {
		os.Exit(bench.BareMain(os.Args[1:], os.Stderr))
	}
	ctx, stop := interruptContext()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// interruptSignals end a run: its nodes are stopped, its directories
// removed and what it measured so far is printed.
var interruptSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// interruptContext returns a context done at the first of
// interruptSignals. Only the first is caught: from then on those signals
// act as they would without the tool's handler, so a second Ctrl-C kills a
// tool whose cleanup is taking too long (on Linux the kernel still kills
// its nodes, though their directories are left behind). A signal the tool
// was started with ignored stays ignored (catching it would undo that: a
// run under nohup must outlive its terminal's SIGHUP).
func interruptContext() (context.Context, context.CancelFunc) {
	var caught []os.Signal
	for _, s := range interruptSignals {
		if !signal.Ignored(s) {
			caught = append(caught, s)
		}
	}
	if len(caught) == 0 { // Notify with no signals would catch them all
		return context.WithCancel(context.Background())
	}
	ctx, stop := signal.NotifyContext(context.Background(), caught...)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}

// usageError is a bad command line: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// scenario is one scenario to run, its flags parsed.
type scenario struct {
	name string
	run  func(ctx context.Context, sup *bench.Supervisor, runs int) (*bench.ScenarioReport, error)
}

// run parses the command line, runs the scenarios and prints the report.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kimura-bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	nodeBin := fs.String("node", "", "the kimura-node binary")
	runs := fs.Int("runs", 3, "repetitions of each scenario")
	asJSON := fs.Bool("json", false, "print one JSON object")
	keep := fs.Bool("keep", false, "keep temporary directories and node logs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		return usageExit(stderr, usageError{err.Error()})
	}
	if *runs < 1 {
		return usageExit(stderr, usagef("--runs must be at least 1"))
	}
	if fs.NArg() == 0 {
		return usageExit(stderr, usagef("no scenario given"))
	}
	scenarios, err := parseScenario(fs.Arg(0), fs.Args()[1:])
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	if err != nil {
		return usageExit(stderr, err)
	}
	bin, err := findNode(*nodeBin)
	if err != nil {
		fmt.Fprintf(stderr, "kimura-bench: %v\n", err)
		return exitUsage
	}
	sup, err := bench.NewSupervisor(bin, *keep, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "kimura-bench: %v\n", err)
		return exitUsage
	}
	defer sup.Close()

	report := &bench.Report{Env: bench.NewEnv(bin), Runs: *runs}
	failed := false
	for _, s := range scenarios {
		if ctx.Err() != nil {
			break
		}
		start := time.Now()
		sup.Progressf("%s: starting (%d runs)", s.name, *runs)
		rep, err := s.run(ctx, sup, *runs)
		if rep == nil {
			rep = bench.NewScenarioReport(s.name, *runs, nil)
		}
		rep.Name = s.name // the report is keyed by it: all runs ingest twice
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("interrupted: %w", err)
			}
			rep.Error = err.Error()
			failed = true
			fmt.Fprintf(stderr, "kimura-bench: %s: %v\n", s.name, err)
		}
		rep.Finish()
		report.Scenarios = append(report.Scenarios, rep)
		sup.Progressf("%s: done in %v", s.name, time.Since(start).Round(time.Millisecond))
	}
	sup.Close() // before printing: the nodes are gone and the directories removed

	if *asJSON {
		err = report.WriteJSON(stdout)
	} else {
		err = report.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "kimura-bench: %v\n", err)
		return exitFail
	}
	if _, _, broken := report.Counts(); broken > 0 || failed || ctx.Err() != nil {
		return exitFail
	}
	return exitOK
}

func usageExit(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "kimura-bench: %v\n%s", err, usage)
	return exitUsage
}

// findNode returns the kimura-node to run: the one given, else the one
// next to this executable.
func findNode(given string) (string, error) {
	if given != "" {
		abs, err := filepath.Abs(given)
		if err != nil {
			return "", fmt.Errorf("--node %s: %w", given, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("--node: %w", err)
		}
		return abs, nil
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return "", fmt.Errorf("cannot locate kimura-bench itself (%w); pass --node PATH", err)
	}
	cand := filepath.Join(filepath.Dir(exe), "kimura-node")
	if _, err := os.Stat(cand); err != nil {
		return "", fmt.Errorf("no kimura-node next to %s: build both with `go build -o bin/ ./cmd/...` and run bin/kimura-bench, or pass --node PATH", exe)
	}
	return cand, nil
}

// parseScenario parses a scenario's name and flags.
func parseScenario(name string, args []string) ([]scenario, error) {
	switch name {
	case "ingest":
		s, err := ingestFlags(args)
		return []scenario{s}, err
	case "propagate":
		s, err := propagateFlags(args)
		return []scenario{s}, err
	case "restart":
		s, err := restartFlags(args)
		return []scenario{s}, err
	case "catchup":
		s, err := catchupFlags(args)
		return []scenario{s}, err
	case "all":
		if err := parseFlags(flag.NewFlagSet("all", flag.ContinueOnError), args); err != nil {
			return nil, err
		}
		var out []scenario
		for _, a := range allScenarios {
			s, err := parseScenario(a.scenario, a.args)
			if err != nil {
				return nil, err
			}
			s[0].name = a.name
			out = append(out, s[0])
		}
		return out, nil
	}
	return nil, usagef("unknown scenario %q: want ingest, propagate, restart, catchup or all", name)
}

// allScenarios is what `all` runs: every scenario with its defaults, and
// an open-loop ingest at 10,000 msgs/s in batches of 100, the condition the
// issue states the inclusion-latency target at, which the closed-loop
// default never meets. It skips the bare endpoint: no target there uses it.
var allScenarios = []struct {
	name, scenario string
	args           []string
}{
	{"ingest", "ingest", nil},
	{"ingest-open-loop", "ingest", []string{"--mode", "batch", "--batch", "100", "--rate", "10000", "--no-bare"}},
	{"propagate", "propagate", nil},
	{"restart", "restart", nil},
	{"catchup", "catchup", nil},
}

// parseFlags parses a scenario's flags, refusing leftovers.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

func ingestFlags(args []string) (scenario, error) {
	c, err := parseIngest(args)
	if err != nil {
		return scenario{}, err
	}
	return scenario{name: "ingest", run: func(ctx context.Context, sup *bench.Supervisor, runs int) (*bench.ScenarioReport, error) {
		return bench.Ingest(ctx, sup, c, runs)
	}}, nil
}

// parseIngest parses and checks ingest's flags.
func parseIngest(args []string) (bench.IngestConfig, error) {
	var c bench.IngestConfig
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	fs.IntVar(&c.Clients, "clients", 64, "concurrent clients")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "load time per run and mode")
	fs.StringVar(&c.Mode, "mode", "both", "single, batch or both")
	fs.IntVar(&c.Batch, "batch", 1000, "messages per POST /messages")
	fs.Float64Var(&c.Rate, "rate", 0, "offered msgs/s (open loop); 0 = closed loop")
	fs.IntVar(&c.ContentBytes, "content-bytes", 100, "bytes of content per message")
	fs.IntVar(&c.Presign, "presign", 0, "messages to sign up front; 0 = by duration")
	fs.DurationVar(&c.BlockInterval, "block-interval", 0, "the leader's block interval; 0 = --test-mode")
	fs.IntVar(&c.MaxBlockMessages, "max-block-messages", 0, "the leader's --max-block-messages; 0 = its default")
	fs.BoolVar(&c.NoBare, "no-bare", false, "skip the bare durable endpoint")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	if err := c.Validate(); err != nil {
		return c, usagef("ingest: %v", err)
	}
	return c, nil
}

func propagateFlags(args []string) (scenario, error) {
	var c bench.PropagateConfig
	fs := flag.NewFlagSet("propagate", flag.ContinueOnError)
	fs.IntVar(&c.Peers, "peers", 3, "peers following the leader")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "time under load (large blocks)")
	fs.Float64Var(&c.Rate, "rate", 15000, "offered msgs/s of the load")
	fs.IntVar(&c.Batch, "batch", 100, "messages per POST /messages of the load")
	fs.IntVar(&c.SmallBlocks, "small-blocks", 20, "one-message blocks to measure")
	fs.IntVar(&c.MaxBlockMessages, "max-block-messages", 10000, "the leaders' --max-block-messages and the full block's size")
	fs.DurationVar(&c.FillInterval, "fill-interval", 0, "block interval of the full-block cluster; 0 = by size")
	fs.IntVar(&c.ContentBytes, "content-bytes", 100, "bytes of content per message")
	if err := parseFlags(fs, args); err != nil {
		return scenario{}, err
	}
	if err := c.Validate(); err != nil {
		return scenario{}, usagef("propagate: %v", err)
	}
	return scenario{name: "propagate", run: func(ctx context.Context, sup *bench.Supervisor, runs int) (*bench.ScenarioReport, error) {
		return bench.Propagate(ctx, sup, c, runs)
	}}, nil
}

// chainFlags parses the flags of a scenario that builds a chain first.
func chainFlags(name string, blocks int, args []string) (bench.ChainConfig, error) {
	var c bench.ChainConfig
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.IntVar(&c.Blocks, "blocks", blocks, "blocks in the chain")
	fs.IntVar(&c.MessagesPerBlock, "messages-per-block", 10, "messages in each block")
	fs.DurationVar(&c.BuildInterval, "build-interval", time.Millisecond, "block interval while building")
	fs.IntVar(&c.ContentBytes, "content-bytes", 100, "bytes of content per message")
	fs.StringVar(&c.Builder, "build", "leader", "how the chain is built: leader (fed over HTTP) or direct (written with the node's store package)")
	fs.StringVar(&c.Chain, "chain", "", "measure this stopped node's data directory instead of building a chain (used in place)")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	if err := c.Validate(); err != nil {
		return c, usagef("%s: %v", name, err)
	}
	return c, nil
}

func restartFlags(args []string) (scenario, error) {
	c, err := chainFlags("restart", 100_000, args)
	return scenario{name: "restart", run: func(ctx context.Context, sup *bench.Supervisor, runs int) (*bench.ScenarioReport, error) {
		return bench.Restart(ctx, sup, c, runs)
	}}, err
}

func catchupFlags(args []string) (scenario, error) {
	c, err := chainFlags("catchup", 10_000, args)
	return scenario{name: "catchup", run: func(ctx context.Context, sup *bench.Supervisor, runs int) (*bench.ScenarioReport, error) {
		return bench.Catchup(ctx, sup, c, runs)
	}}, err
}
