//go:build linux

package bench

import (
	"crypto/sha256"
	"os"
	"testing"
	"time"
)

// TestCPUTimeCountsWork burns CPU in this process until /proc reports at
// least 50 ms of it, within a deadline.
func TestCPUTimeCountsWork(t *testing.T) {
	before, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	sum := sha256.Sum256(nil)
	for time.Now().Before(deadline) {
		for range 10_000 {
			sum = sha256.Sum256(sum[:])
		}
		now, err := cpuTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= 50*time.Millisecond {
			return
		}
	}
	t.Fatalf("cpuTime did not grow by 50 ms in 10 s of hashing (from %v)", before)
}

func TestCPUTimeOfNoProcess(t *testing.T) {
	if _, err := cpuTime(-1); err == nil {
		t.Fatal("cpuTime(-1) = nil error")
	}
}
