package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kimura-ledger/kimura/internal/bench"
)

// TestMain lets the test binary stand in for kimura-bench when the smoke
// test's run starts the bare endpoint as a child of this executable, and
// for the signal test's child.
func TestMain(m *testing.M) {
	if os.Getenv(bench.BareChildEnv) == "1" {
		os.Exit(bench.BareMain(os.Args[1:], os.Stderr))
	}
	if os.Getenv(signalChildEnv) == "1" {
		signalChild()
	}
	os.Exit(m.Run())
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"fly"},
		{"--runs", "0", "ingest"},
		{"--bogus", "ingest"},
		{"ingest", "--mode", "sideways"},
		{"ingest", "--clients", "0"},
		{"ingest", "extra"},
		{"restart", "--blocks", "0"},
		{"all", "--duration", "1s"},
		{"--node", filepath.Join(t.TempDir(), "missing"), "ingest"},
		{"ingest", "--rate", "NaN"},
		{"ingest", "--rate", "Inf"},
		{"ingest", "--rate", "-Inf"},
		{"propagate", "--rate", "NaN"},
		{"propagate", "--rate", "+Inf"},
		{"restart", "--build-interval", "25h"},
		{"catchup", "--build-interval", "0s"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("kimura-bench %q: exit %d, want %d; stderr:\n%s", args, code, exitUsage, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("kimura-bench %q wrote to stdout: %q", args, stdout.String())
		}
		if !strings.HasPrefix(stderr.String(), "kimura-bench: ") {
			t.Errorf("kimura-bench %q: stderr %q does not start with the program's name", args, stderr.String())
		}
	}
}

// Runs too large to pre-sign or to time are usage errors, whose first line
// names the flag, not a panic in the middle of signing.
func TestOversizedRunsAreUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"ingest", "--presign", "1000000000000"}, "--presign"},
		{[]string{"ingest", "--duration", "2562047h"}, "--duration"},
		{[]string{"ingest", "--duration", "10m"}, "--duration"},
		{[]string{"ingest", "--clients", "1000000000000"}, "--clients"},
		{[]string{"propagate", "--duration", "10h"}, "--duration"},
		{[]string{"propagate", "--duration", "100000h"}, "--duration"},
		{[]string{"propagate", "--max-block-messages", "1000000000000"}, "--max-block-messages"},
		{[]string{"propagate", "--peers", "1000000"}, "--peers"},
		{[]string{"restart", "--blocks", "9223372036854775807", "--messages-per-block", "10000"}, "--blocks"},
		{[]string{"catchup", "--blocks", "9223372036854775807"}, "--blocks"},
		{[]string{"restart", "--build", "direct", "--blocks", "10", "--messages-per-block", "10000", "--content-bytes", "65536"}, "--messages-per-block"},
		{[]string{"restart", "--blocks", "1000000", "--content-bytes", "65536"}, "--blocks"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), c.args, &stdout, &stderr); code != exitUsage {
			t.Errorf("kimura-bench %q: exit %d, want %d", c.args, code, exitUsage)
		}
		first, _, _ := strings.Cut(stderr.String(), "\n")
		if !strings.HasPrefix(first, "kimura-bench: "+c.args[0]+": "+c.flag) {
			t.Errorf("kimura-bench %q: first line %q does not name %s", c.args, first, c.flag)
		}
	}
}

// report is the part of the JSON report the smoke test reads.
type report struct {
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	Runs      int    `json:"runs"`
	Scenarios map[string]struct {
		Metrics map[string]struct {
			Unit   string    `json:"unit"`
			Values []float64 `json:"values"`
			Median *float64  `json:"median"`
			Pass   *bool     `json:"pass"`
		} `json:"metrics"`
		Error string `json:"error"`
	} `json:"scenarios"`
	InvariantsBroken *int `json:"invariants_broken"`
}

// TestSmoke builds kimura-node and runs a short ingest and a small restart
// against it, checking the shape of the JSON report and that no
// acknowledged message went missing.
func TestSmoke(t *testing.T) {
	node := buildNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	rep := runJSON(ctx, t, "--node", node, "--json", "--runs", "1",
		"ingest", "--duration", "1s", "--clients", "4", "--batch", "200", "--presign", "20000")
	if rep.Date == "" || rep.GoVersion == "" || rep.CPU == "" || rep.Cores < 1 || rep.Runs != 1 {
		t.Errorf("environment fields missing: %+v", rep)
	}
	ingest, ok := rep.Scenarios["ingest"]
	if !ok {
		t.Fatalf("no ingest scenario in the report")
	}
	for _, mode := range []string{"single", "batch"} {
		for _, name := range []string{
			"accepted_per_s", "committed_per_s", "submit_p50", "submit_p99", "inclusion_p50", "inclusion_p99",
			"acked_missing", "committed_twice", "leader_peak_rss", "disk_per_msg", "bare_accepted_per_s", "ratio_to_bare",
		} {
			m, ok := ingest.Metrics[mode+"."+name]
			if !ok || len(m.Values) != 1 || m.Median == nil {
				t.Errorf("ingest metric %s.%s missing or without one value: %+v", mode, name, m)
			}
		}
		missing := ingest.Metrics[mode+".acked_missing"]
		if len(missing.Values) != 1 || missing.Values[0] != 0 || missing.Pass == nil || !*missing.Pass {
			t.Errorf("%s: acknowledged but missing: %+v, want 0", mode, missing)
		}
		if c := ingest.Metrics[mode+".committed"]; len(c.Values) != 1 || c.Values[0] < 1 {
			t.Errorf("%s: nothing committed: %+v", mode, c)
		}
	}

	rep = runJSON(ctx, t, "--node", node, "--json", "--runs", "1", "restart", "--blocks", "200")
	restart, ok := rep.Scenarios["restart"]
	if !ok {
		t.Fatalf("no restart scenario in the report")
	}
	for _, name := range []string{"chain_height", "chain_messages", "exec_to_health", "blocks_per_s_to_healthy", "verify_blocks_per_s", "node_verify_time", "peak_rss", "disk_per_msg"} {
		if m, ok := restart.Metrics[name]; !ok || len(m.Values) != 1 {
			t.Errorf("restart metric %s missing or without one value: %+v", name, m)
		}
	}
	if v := restart.Metrics["verified_blocks"].Values; len(v) != 1 || v[0] < 201 {
		t.Errorf("verified_blocks %v, want at least 201 (200 and genesis)", v)
	}
}

// A run that does no work is an error of its scenario (exit 1), not a
// pass for want of figures: an ingest too short to send anything, and a
// propagate load too slow to make a block of 1,000 messages.
func TestRunWithoutWorkFails(t *testing.T) {
	node := buildNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ingest", "--duration", "1ns", "--no-bare", "--mode", "single"}, "ingest single run 1 did no work: no message was acknowledged"},
		{[]string{"propagate", "--peers", "1", "--duration", "300ms", "--rate", "100", "--small-blocks", "0", "--max-block-messages", "1000"},
			"propagate run 1 did no work: no block held 1,000 messages or more"},
	} {
		args := append([]string{"--node", node, "--json", "--runs", "1"}, c.args...)
		var stdout, stderr bytes.Buffer
		code := run(ctx, args, &stdout, &stderr)
		if code != exitFail {
			t.Errorf("kimura-bench %q: exit %d, want %d; stderr:\n%s", c.args, code, exitFail, stderr.String())
		}
		var rep report
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("kimura-bench %q: stdout is not one JSON object: %v\n%s", c.args, err, stdout.String())
		}
		if got := rep.Scenarios[c.args[0]].Error; !strings.Contains(got, c.want) {
			t.Errorf("kimura-bench %q: error %q, want it to say %q", c.args, got, c.want)
		}
	}
}

// buildNode builds kimura-node for the tests that run it.
func buildNode(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("spawns kimura-node processes")
	}
	node := filepath.Join(t.TempDir(), "kimura-node")
	build := exec.Command("go", "build", "-o", node, "github.com/kimura-ledger/kimura/cmd/kimura-node")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build kimura-node: %v\n%s", err, out)
	}
	return node
}

// runJSON runs kimura-bench with args, wants exit 0 and returns its report.
func runJSON(ctx context.Context, t *testing.T, args ...string) report {
	t.Helper()
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(ctx, args, &stdout, &stderr)
	t.Logf("kimura-bench %s: exit %d in %v; stderr:\n%s", strings.Join(args[2:], " "), code, time.Since(start).Round(time.Millisecond), stderr.String())
	if code != exitOK {
		t.Fatalf("exit %d, want %d; stdout:\n%s", code, exitOK, stdout.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
	}
	if rep.InvariantsBroken == nil || *rep.InvariantsBroken != 0 {
		t.Errorf("invariants_broken = %v, want 0", rep.InvariantsBroken)
	}
	return rep
}
