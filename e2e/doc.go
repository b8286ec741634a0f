// Package e2e holds Kimura's black-box process tests: they build the real
// kimura-node binary once (TestMain), start it as a separate process on a
// t.TempDir() data directory and free 127.0.0.1 ports, and judge it only by
// what SPEC.md fixes: the HTTP API, the exit codes, the on-disk schema and a
// few log lines.
//
// The package has no non-test code besides this comment. The harness in
// harness_test.go (startNode, Node, runBinary, eventually) is meant to be
// reused by every process test, including the multi-node peer tests.
//
// Set KIMURA_E2E_RACE=1 to build the node with the race detector; any race
// it reports in a node's output fails the test that ran that node.
package e2e
