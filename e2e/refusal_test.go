package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/kimura-ledger/kimura/internal/chain"
	"github.com/kimura-ledger/kimura/internal/store/storetest"
)

// blockKey is SPEC's key of the block at height: "block:" + 8 bytes big-endian.
func blockKey(height uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte("block:"), height)
}

// quietLogger keeps Pebble's own messages out of the test output.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(string, ...any)          {}
func (quietLogger) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

// editChain opens <db>/chain of a stopped node with Pebble (default options
// but for the logger), runs edit on it and closes it.
func editChain(t testing.TB, db string, edit func(*pebble.DB) error) {
	t.Helper()
	p, err := pebble.Open(filepath.Join(db, "chain"), &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		t.Fatalf("open %s/chain with pebble: %v", db, err)
	}
	err = edit(p)
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("edit %s/chain: %v", db, err)
	}
}

// getValue reads a copy of key's value.
func getValue(p *pebble.DB, key []byte) ([]byte, error) {
	v, closer, err := p.Get(key)
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// copyDir copies the regular files of a directory tree.
func copyDir(t testing.TB, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", from, to, err)
	}
}

// nodeArgs is a node's command line on db for runBinary: only 127.0.0.1,
// free ports.
func nodeArgs(db string, extra ...string) []string {
	return append([]string{"--rpc-addr", "127.0.0.1:0", "--listen-addr", "/ip4/127.0.0.1/tcp/0", "--db-path", db}, extra...)
}

// TestCorruptDatabaseRefused: a chain with a missing block or a damaged byte
// anywhere in a block record is refused at startup with exit code 3, the bad
// height named and nothing served; the verify tool says the same.
func TestCorruptDatabaseRefused(t *testing.T) {
	t.Parallel()
	pristine := t.TempDir()

	// A chain of about ten blocks, one of them (the target) with messages,
	// with blocks after it.
	n := startNode(t, "--leader", "--test-mode", "--db-path", pristine)
	n.WaitHeight(2, 5*time.Second)
	sender := newSender(t)
	var ids []chain.Hash
	for i := range 3 {
		a, err := n.Client().SubmitBatch(t.Context(), []chain.Message{chain.SignMessage(sender, uint64(i), fmt.Sprintf("message %d", i))})
		if err != nil || len(a) != 1 || a[0].ID == nil {
			t.Fatalf("submit: %+v, %v", a, err)
		}
		ids = append(ids, *a[0].ID)
	}
	target := *waitConfirmed(t, n, ids[len(ids)-1], 5*time.Second).BlockHeight
	n.WaitHeight(max(target+4, 8), 5*time.Second)
	targetBlock, err := n.Client().Block(t.Context(), target, false)
	if err != nil {
		t.Fatal(err)
	}
	stopGracefully(t, n)

	var (
		tip    uint64
		record []byte
	)
	editChain(t, pristine, func(p *pebble.DB) error {
		v, err := getValue(p, []byte("meta:last_height"))
		if err != nil {
			return err
		}
		if len(v) != 8 {
			return fmt.Errorf("meta:last_height is %d bytes, SPEC says 8", len(v))
		}
		tip = binary.BigEndian.Uint64(v)
		record, err = getValue(p, blockKey(target))
		return err
	})
	if tip < target+2 {
		t.Fatalf("tip %d: want blocks after the target %d", tip, target)
	}
	t.Logf("chain of %d blocks; block %d holds messages and has a record of %d bytes", tip+1, target, len(record))

	// refusedNaming checks that a start and verify both refuse db with exit
	// code 3 and name a height h for which named(h) holds (want says which).
	corruptAt := regexp.MustCompile(`chain corrupt at height (\d+)\b`)
	refusedNaming := func(t *testing.T, db, want string, named func(uint64) bool) {
		t.Helper()
		check := func(what string, code int, stdout, stderr string) {
			t.Helper()
			if code != 3 {
				t.Errorf("%s: exit %d, want 3\nstdout: %s\nstderr: %s", what, code, stdout, stderr)
			}
			m := corruptAt.FindStringSubmatch(stderr)
			if m == nil {
				t.Errorf("%s: stderr names no height: %s", what, stderr)
			} else if h, _ := strconv.ParseUint(m[1], 10, 64); !named(h) {
				t.Errorf("%s: stderr names height %d, want %s: %s", what, h, want, stderr)
			}
			if strings.Contains(stdout+stderr, "Serving HTTP API") {
				t.Errorf("%s served its API: %s", what, stderr)
			}
		}
		code, stdout, stderr := runBinary(t, nodeArgs(db, "--leader", "--test-mode")...)
		check("start on a corrupt chain", code, stdout, stderr)
		code, stdout, stderr = runBinary(t, "verify", "--db-path", db)
		check("verify of a corrupt chain", code, stdout, stderr)
	}
	refused := func(t *testing.T, db string, height uint64) {
		t.Helper()
		refusedNaming(t, db, fmt.Sprintf("height %d", height), func(h uint64) bool { return h == height })
	}
	corrupted := func(t *testing.T, edit func(*pebble.DB) error) string {
		t.Helper()
		db := t.TempDir()
		copyDir(t, pristine, db)
		editChain(t, db, edit)
		return db
	}

	t.Run("intact copy verifies", func(t *testing.T) {
		t.Parallel()
		db := corrupted(t, func(*pebble.DB) error { return nil })
		code, stdout, stderr := runBinary(t, "verify", "--db-path", db)
		if code != 0 || !strings.Contains(stdout, fmt.Sprintf("Chain integrity verified: %d blocks", tip+1)) {
			t.Errorf("verify of the intact copy: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
	})
	t.Run("missing block", func(t *testing.T) {
		t.Parallel()
		missing := tip / 2
		db := corrupted(t, func(p *pebble.DB) error { return p.Delete(blockKey(missing), pebble.Sync) })
		refused(t, db, missing)
	})
	t.Run("truncated record", func(t *testing.T) {
		t.Parallel()
		db := corrupted(t, func(p *pebble.DB) error {
			return p.Set(blockKey(target), record[:len(record)-1], pebble.Sync)
		})
		refused(t, db, target)
	})
	// Damage on disk that Pebble's own block checksum finds: a bit flipped
	// in the table file that holds the record, not written through Pebble.
	// The height named is the first that the damaged part of the file
	// holds, so the target or one before it.
	t.Run("bit flipped in a table file", func(t *testing.T) {
		t.Parallel()
		db := corrupted(t, func(*pebble.DB) error { return nil })
		// The middle of the signature, which compression keeps as it is.
		// Not its ends: the bytes beside them (a count, say) may make them
		// part of a copy of earlier bytes.
		sig := targetBlock.Signature[16:48]
		if !bytes.Contains(record, sig) {
			t.Fatalf("block %d's record does not hold its signature", target)
		}
		storetest.FlipBitInTables(t, filepath.Join(db, "chain"), sig, 16, true)
		refusedNaming(t, db, fmt.Sprintf("at most %d", target), func(h uint64) bool { return h <= target })
	})
	// One flipped bit at offsets spread over the record. With the encoding
	// of internal/chain they fall in the height, timestamp, prev_hash,
	// message_root, producer, signature, entry count, first entry and last
	// entry; the test relies only on SPEC: every byte is covered.
	for _, off := range []int{7, 15, 30, 60, 100, 150, 179, 200, len(record) - 1} {
		t.Run(fmt.Sprintf("bit flipped in byte %d of %d", off, len(record)), func(t *testing.T) {
			t.Parallel()
			if off >= len(record) {
				t.Skipf("record has %d bytes", len(record))
			}
			db := corrupted(t, func(p *pebble.DB) error {
				bad := append([]byte(nil), record...)
				bad[off] ^= 0x01
				return p.Set(blockKey(target), bad, pebble.Sync)
			})
			refused(t, db, target)
		})
	}
}

// TestDataDirLocked: a second node on a data directory in use exits 1 with a
// message that says so, and the first goes on.
func TestDataDirLocked(t *testing.T) {
	t.Parallel()
	n := startNode(t, "--leader", "--test-mode")
	h := n.WaitHeight(1, 5*time.Second)

	code, stdout, stderr := runBinary(t, nodeArgs(n.DBPath(), "--leader", "--test-mode")...)
	if code != 1 {
		t.Errorf("second node on the same --db-path: exit %d, want 1\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, "Serving HTTP API") {
		t.Errorf("second node on the same --db-path served its API:\n%s", stderr)
	}
	last := lastLine(stderr)
	if lower := strings.ToLower(last); !strings.Contains(lower, "in use") && !strings.Contains(lower, "lock") {
		t.Errorf("second node's last stderr line %q does not say the directory is in use", last)
	}
	if !strings.Contains(last, n.DBPath()) {
		t.Errorf("second node's last stderr line %q does not name the directory %s", last, n.DBPath())
	}

	// The offline check does not read a live node's data either.
	if code, stdout, stderr := runBinary(t, "verify", "--db-path", n.DBPath()); code != 1 {
		t.Errorf("verify of a running node's data: exit %d, want 1\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	n.WaitHeight(h+2, 5*time.Second)
	stopGracefully(t, n)
}

// TestListenAddrInUse: a second node given the libp2p address a running
// node listens on exits 1 saying so, instead of sharing the port with it
// (SO_REUSEPORT, on which the kernel would hand each incoming connection,
// a peer's dial of the leader included, to either node).
func TestListenAddrInUse(t *testing.T) {
	t.Parallel()
	n := startNode(t, "--leader", "--test-mode")
	addrs := n.Health().P2PAddrs
	if len(addrs) == 0 {
		t.Fatal("/health: no p2p_addrs")
	}
	listen, _, _ := strings.Cut(addrs[0], "/p2p/")
	code, stdout, stderr := runBinary(t, "--leader", "--test-mode", "--db-path", t.TempDir(), "--rpc-addr", "127.0.0.1:0", "--listen-addr", listen)
	if code != 1 {
		t.Errorf("second node on --listen-addr %s: exit %d, want 1\nstdout: %s\nstderr: %s", listen, code, stdout, stderr)
	}
	if last := lastLine(stderr); !strings.Contains(last, "address already in use") {
		t.Errorf("second node's last stderr line %q does not say the address is in use", last)
	}
	n.WaitHeight(n.Health().Height+1, 5*time.Second)
	stopGracefully(t, n)
}

// TestRPCPortFlag: --rpc-port N serves the API on 127.0.0.1:N, and 0 picks
// a free port, as --rpc-addr 127.0.0.1:0 does.
func TestRPCPortFlag(t *testing.T) {
	t.Parallel()
	n := startNode(t, "--leader", "--test-mode", "--rpc-port", "0")
	if !strings.HasPrefix(n.URL(), "http://127.0.0.1:") || strings.HasSuffix(n.URL(), ":0") {
		t.Fatalf("--rpc-port 0 serves on %s, want 127.0.0.1 and a chosen port", n.URL())
	}
	// A port below the ephemeral range: no outgoing connection can take it
	// between the check that it is free and the node's bind.
	_, port, err := net.SplitHostPort(rebindableAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n = startNode(t, "--leader", "--test-mode", "--rpc-port", port)
	if want := "http://127.0.0.1:" + port; n.URL() != want {
		t.Fatalf("--rpc-port %s serves on %s, want %s", port, n.URL(), want)
	}
}

// TestBadFlags: a bad command line exits 2 with one line on stderr.
func TestBadFlags(t *testing.T) {
	t.Parallel()
	db := t.TempDir()
	cases := []struct {
		name string
		args []string
	}{
		{"unknown flag", nodeArgs(db, "--leader", "--no-such-flag")},
		{"block interval not a duration", nodeArgs(db, "--leader", "--block-interval", "soon")},
		{"block interval zero", nodeArgs(db, "--leader", "--block-interval", "0s")},
		{"block interval negative", nodeArgs(db, "--leader", "--block-interval", "-1s")},
		{"peer without --leader-rpc", nodeArgs(db)},
		{"leader with --leader-rpc", nodeArgs(db, "--leader", "--leader-rpc", "http://127.0.0.1:1")},
		{"max block messages zero", nodeArgs(db, "--leader", "--max-block-messages", "0")},
		{"max block messages too many", nodeArgs(db, "--leader", "--max-block-messages", "500001")},
		{"max message bytes zero", nodeArgs(db, "--leader", "--max-message-bytes", "0")},
		{"max message bytes too many", nodeArgs(db, "--leader", "--max-message-bytes", "16777217")},
		{"max pending bytes below one message", nodeArgs(db, "--leader", "--max-pending-bytes", "1000")},
		{"max pending bytes too many", nodeArgs(db, "--leader", "--max-pending-bytes", "2147483649")},
		{"max pending bytes zero on a peer", nodeArgs(db, "--leader-rpc", "http://127.0.0.1:1", "--max-pending-bytes", "0")},
		{"rpc addr not host:port", append(nodeArgs(db, "--leader"), "--rpc-addr", "nonsense")},
		{"rpc addr port out of range", append(nodeArgs(db, "--leader"), "--rpc-addr", "127.0.0.1:99999")},
		{"listen addr not a multiaddr", nodeArgs(db, "--leader", "--listen-addr", "garbage")},
		{"listen addr not tcp", nodeArgs(db, "--leader", "--listen-addr", "/ip4/127.0.0.1/udp/0")},
		{"leader addr not a multiaddr", nodeArgs(db, "--leader-rpc", "http://127.0.0.1:1", "--leader-addr", "garbage")},
		{"leader addr without /p2p", nodeArgs(db, "--leader-rpc", "http://127.0.0.1:1", "--leader-addr", "/ip4/127.0.0.1/tcp/4001")},
		{"stray argument", nodeArgs(db, "--leader", "stray")},
		{"bad --log-format", nodeArgs(db, "--leader", "--log-format", "xml")},
		{"query without a subject", []string{"query"}},
		{"query with flags only", []string{"query", "--rpc", "http://127.0.0.1:1"}},
		{"query of an unknown subject", []string{"query", "weather", "--rpc", "http://127.0.0.1:1"}},
		{"query block without --height", []string{"query", "block", "--rpc", "http://127.0.0.1:1"}},
		{"keygen without --key", []string{"keygen"}},
		{"submit without --key", []string{"submit", "--content", "x", "--rpc", "http://127.0.0.1:1"}},
		{"verify with an unknown flag", []string{"verify", "--db-path", db, "--fast"}},
		// Numbers are plain decimal, as over HTTP: not the flag package's
		// 0x (or 0 for octal) prefixes, which would sign or fetch another.
		{"max block messages in hex", nodeArgs(db, "--leader", "--max-block-messages", "0x10")},
		{"rpc port in hex", nodeArgs(db, "--leader", "--rpc-port", "0x1f90")},
		{"nonce in hex", []string{"submit", "--key", db + "/no-key", "--content", "x", "--nonce", "0x10", "--rpc", "http://127.0.0.1:1"}},
		{"height in binary", []string{"query", "block", "--height", "0b11", "--rpc", "http://127.0.0.1:1"}},
		// An --rpc that cannot be a node's URL, found before any request.
		{"query with an ftp --rpc", []string{"query", "height", "--rpc", "ftp://127.0.0.1:1"}},
		{"query with an --rpc without scheme", []string{"query", "height", "--rpc", "127.0.0.1:1"}},
		{"query with an --rpc with a query", []string{"query", "height", "--rpc", "http://127.0.0.1:1/health?x="}},
		{"submit with an ftp --rpc", []string{"submit", "--key", db + "/no-key", "--content", "x", "--rpc", "ftp://127.0.0.1:1"}},
		{"submit of content that is not UTF-8", []string{"submit", "--key", db + "/no-key", "--content", "\xff\xfe", "--rpc", "http://127.0.0.1:1"}},
		{"peer with a --leader-rpc with a fragment", nodeArgs(db, "--leader-rpc", "http://127.0.0.1:1/#x")},
		{"peer with a --leader-rpc ending in an empty fragment", nodeArgs(db, "--leader-rpc", "http://127.0.0.1:1/#")},
		{"peer with a --leader-rpc port out of range", nodeArgs(db, "--leader-rpc", "http://127.0.0.1:99999")},
		{"peer with a --leader-rpc port zero", nodeArgs(db, "--leader-rpc", "http://127.0.0.1:0")},
		{"query with an --rpc port out of range", []string{"query", "height", "--rpc", "http://127.0.0.1:99999"}},
		{"query with an --rpc ending in an empty fragment", []string{"query", "height", "--rpc", "http://127.0.0.1:1/#"}},
		// The four level names only, not slog's offsets from them.
		{"log level with an offset", nodeArgs(db, "--leader", "--log-level", "info+2")},
		{"log level unknown", nodeArgs(db, "--leader", "--log-level", "verbose")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runBinary(t, tc.args...)
			if code != 2 {
				t.Errorf("kimura-node %s: exit %d, want 2\nstdout: %s\nstderr: %s", strings.Join(tc.args, " "), code, stdout, stderr)
			}
			if line := strings.TrimSuffix(stderr, "\n"); line == "" || strings.Contains(line, "\n") {
				t.Errorf("kimura-node %s: stderr is not one line: %q", strings.Join(tc.args, " "), stderr)
			}
		})
	}
	t.Cleanup(func() { // after the parallel subtests
		if entries, err := os.ReadDir(db); err != nil || len(entries) != 0 {
			t.Errorf("a bad command line left %d entries in --db-path (%v)", len(entries), err)
		}
	})
}

// TestHelp: -h or --help is not a bad command line: the flags go to
// stderr, the exit is 0, and nothing is started or written.
func TestHelp(t *testing.T) {
	t.Parallel()
	db := t.TempDir()
	for _, c := range []struct {
		args []string
		flag string // one the answer must list
	}{
		{[]string{"--db-path", db, "-h"}, "-db-path"},
		{[]string{"--help"}, "-max-block-messages N"},
		{[]string{"submit", "-h"}, "-nonce N"},
		{[]string{"query", "block", "--help"}, "-height N"},
		{[]string{"query", "-h"}, "WHAT one of: height"},
		{[]string{"verify", "-h"}, "-db-path"},
	} {
		code, stdout, stderr := runBinary(t, c.args...)
		if code != 0 || !strings.Contains(stderr, c.flag) {
			t.Errorf("kimura-node %s: exit %d, stderr %q; want 0 and the flags, %s among them\nstdout: %s",
				strings.Join(c.args, " "), code, stderr, c.flag, stdout)
		}
	}
	if entries, err := os.ReadDir(db); err != nil || len(entries) != 0 {
		t.Errorf("asking for help left %d entries in --db-path (%v)", len(entries), err)
	}
}
