// Command kimura-node runs a Kimura node (leader or peer) and holds the
// tools that talk to one: keygen, submit, query and verify.
//
// Exit codes (SPEC "Command line"): 0 after a graceful shutdown; 2 for a bad
// command line; 3 when the integrity check fails; 1 for any other fatal error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kimura-ledger/kimura/internal/node"
	"github.com/kimura-ledger/kimura/internal/store"
)

// Exit codes.
const (
	exitOK      = 0
	exitFatal   = 1
	exitUsage   = 2
	exitCorrupt = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a tool or runs a node, and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "keygen":
			return keygen(args[1:], stdout, stderr)
		case "submit":
			return submit(args[1:], stdout, stderr)
		case "query":
			return query(args[1:], stdout, stderr)
		case "verify":
			return verify(args[1:], stdout, stderr)
		}
	}
	return runNode(args, stderr)
}

// usageError is a bad command line: exit 2 with one line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// helpRequest is -h or --help: the flags are printed and the exit is 0,
// since asking for help is not a bad command line.
type helpRequest struct{ flags string }

func (h helpRequest) Error() string { return "help requested" }

// parse parses args with fs, refusing positional leftovers.
func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			var b strings.Builder
			fs.SetOutput(&b)
			fs.PrintDefaults()
			return helpRequest{b.String()}
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// exitCode prints err as one line prefixed with prog and maps it to a code.
func exitCode(stderr io.Writer, prog string, err error) int {
	if err == nil {
		return exitOK
	}
	var ue usageError
	var ce *store.CorruptionError
	var help helpRequest
	switch {
	case errors.As(err, &help):
		fmt.Fprintf(stderr, "usage of %s (README.md has more):\n%s", prog, help.flags)
		return exitOK
	case errors.As(err, &ue), errors.Is(err, node.ErrConfig):
		fmt.Fprintf(stderr, "%s: %s\n", prog, oneLine(err))
		return exitUsage
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "%s: integrity check failed: %s\n", prog, oneLine(ce))
		return exitCorrupt
	}
	fmt.Fprintf(stderr, "%s: %s\n", prog, oneLine(err))
	return exitFatal
}

// oneLine is err's text on one line: some errors (Pebble's, a server's
// answer) span several.
func oneLine(err error) string {
	return strings.Join(strings.FieldsFunc(err.Error(), func(r rune) bool { return r == '\n' || r == '\r' }), " ")
}

var logLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

func runNode(args []string, stderr io.Writer) int {
	cfg, logLevel, logFormat, err := nodeFlags(args)
	if err != nil {
		return exitCode(stderr, "kimura-node", err)
	}
	// The four names only, not slog's offsets from them ("info+2").
	level, ok := logLevels[strings.ToLower(logLevel)]
	if !ok {
		return exitCode(stderr, "kimura-node", usagef("--log-level %q: want debug, info, warn or error", logLevel))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch logFormat {
	case "text":
		cfg.Log = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		cfg.Log = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		return exitCode(stderr, "kimura-node", usagef("--log-format %q: want text or json", logFormat))
	}
	if err := cfg.Validate(); err != nil {
		return exitCode(stderr, "kimura-node", err)
	}
	limitGoMemory()
	ctx, stop := signalContext()
	defer stop()
	return exitCode(stderr, "kimura-node", node.Run(ctx, cfg))
}

// defaultGoMemoryLimit is the node's soft limit on the memory the Go runtime
// holds (heap, stacks; not Pebble's memtables and block cache, which are
// allocated outside it), unless GOMEMLIMIT sets another. Under load the
// live heap is about 40 MB; with the default GC target the runtime held
// twice that and gave freed memory back slowly, so peak RSS passed 150 MB
// after a million messages. Near the limit the runtime collects sooner and
// returns memory sooner; it never fails an allocation because of it, and
// it caps the extra GC work at half the CPU if the live heap ever grows past
// the limit (a very long pending queue).
const defaultGoMemoryLimit = 64 << 20

func limitGoMemory() {
	if os.Getenv("GOMEMLIMIT") == "" { // as the runtime reads it: empty is unset
		debug.SetMemoryLimit(defaultGoMemoryLimit)
	}
}

func nodeFlags(args []string) (cfg node.Config, logLevel, logFormat string, err error) {
	fs := flag.NewFlagSet("kimura-node", flag.ContinueOnError)
	fs.BoolVar(&cfg.Leader, "leader", false, "run as the leader")
	fs.StringVar(&cfg.DBPath, "db-path", "./kimura-data", "data directory")
	fs.StringVar(&cfg.RPCAddr, "rpc-addr", "127.0.0.1:8545", "HTTP API address")
	var rpcPort int
	decimalVar(fs, &rpcPort, "rpc-port", 0, "shorthand for --rpc-addr 127.0.0.1:`N`")
	fs.StringVar(&cfg.ListenAddr, "listen-addr", "/ip4/127.0.0.1/tcp/0", "libp2p listen multiaddr")
	fs.StringVar(&cfg.LeaderRPC, "leader-rpc", "", "peers: the leader's HTTP API URL")
	fs.StringVar(&cfg.LeaderAddr, "leader-addr", "", "peers: the leader's libp2p multiaddr with /p2p/ID")
	fs.DurationVar(&cfg.BlockInterval, "block-interval", node.DefaultBlockInterval, "leader: time between blocks")
	testMode := fs.Bool("test-mode", false, "block interval 100ms")
	decimalVar(fs, &cfg.MaxBlockMessages, "max-block-messages", node.DefaultMaxBlockMessages, "leader: most messages in one block, `N`")
	decimalVar(fs, &cfg.MaxMessageBytes, "max-message-bytes", node.DefaultMaxMessageBytes, "largest message content, `N` bytes")
	decimalVar(fs, &cfg.MaxPendingBytes, "max-pending-bytes", node.DefaultMaxPendingBytes, "leader: bound of the pending queue, `N` bytes; beyond it submissions get 503")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	if err = parse(fs, args); err != nil {
		return cfg, "", "", err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["rpc-port"] {
		if set["rpc-addr"] {
			return cfg, "", "", usagef("give --rpc-addr or --rpc-port, not both")
		}
		if rpcPort < 0 || rpcPort > 65535 { // 0: a free port, as with --rpc-addr 127.0.0.1:0
			return cfg, "", "", usagef("--rpc-port %d is not a port number", rpcPort)
		}
		cfg.RPCAddr = "127.0.0.1:" + strconv.Itoa(rpcPort)
	}
	// --test-mode sets the interval unless --block-interval says otherwise.
	if *testMode && !set["block-interval"] {
		cfg.BlockInterval = node.TestModeBlockInterval
	}
	if cfg.BlockInterval <= 0 {
		return cfg, "", "", usagef("--block-interval must be positive")
	}
	return cfg, strings.ToLower(logLevel), logFormat, nil
}

// toolContext is the context of a tool's requests: bounded, and cancelled
// by SIGINT or SIGTERM.
func toolContext() (context.Context, context.CancelFunc) {
	ctx, stop := signalContext()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	return ctx, func() { cancel(); stop() }
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
