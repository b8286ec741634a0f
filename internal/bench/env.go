package bench

import (
	"bufio"
	"debug/buildinfo"
	"os"
	"runtime"
	"strings"
	"time"
)

// Env says where and with what a benchmark ran.
type Env struct {
	Date           string `json:"date"`             // RFC 3339, when the run started
	GoVersion      string `json:"go_version"`       // the Go that built kimura-node
	BenchGoVersion string `json:"bench_go_version"` // the Go that built kimura-bench
	CPU            string `json:"cpu"`              // model name from /proc/cpuinfo
	Cores          int    `json:"cores"`
	OS             string `json:"os"`
	LoadAvg        string `json:"load_avg"` // 1, 5 and 15 minute load averages at the start: the cores may be shared
	Node           string `json:"node"`     // the kimura-node binary
}

// NewEnv describes this machine and nodeBin.
func NewEnv(nodeBin string) Env {
	e := Env{
		Date:           time.Now().Format(time.RFC3339),
		BenchGoVersion: runtime.Version(),
		CPU:            cpuModel(),
		Cores:          runtime.NumCPU(),
		OS:             runtime.GOOS + "/" + runtime.GOARCH,
		Node:           nodeBin,
		LoadAvg:        loadAvg(),
	}
	if bi, err := buildinfo.ReadFile(nodeBin); err == nil {
		e.GoVersion = bi.GoVersion
	} else {
		e.GoVersion = "unknown"
	}
	return e
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
