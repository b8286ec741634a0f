// Package bench measures a Kimura node from the outside: it spawns real
// kimura-node processes on 127.0.0.1 in temporary directories, drives them
// over HTTP with pre-signed messages, reads back their chains and logs, and
// reports what it measured against the targets of issue #4.
//
// It builds nothing: the caller names the kimura-node binary. Every process
// and directory it makes belongs to a Supervisor, which removes them all on
// Close, also after an interrupt; on Linux a node is killed by the kernel
// should the benchmark itself die.
//
// Scenarios: Ingest (submission throughput, latency and durability, compared
// with a bare durable endpoint built into the tool), Propagate (leader to
// peer block latency), Restart (startup verification of a long chain) and
// Catchup (a fresh peer syncing a long chain).
//
// What the figures rest on, and their limits, is said beside each scenario:
// a block's commit is the time of the node's log line about it, with
// millisecond precision, on the node's wall clock, which is compared with
// the benchmark's wall clock on the same machine.
package bench
