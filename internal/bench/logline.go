package bench

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LogLine is one line of a node's log in slog's text format
// (time=... level=... msg="..." key=value ...), as the node wrote it and as
// the benchmark read it.
type LogLine struct {
	Raw     string
	Arrived time.Time // when the benchmark read the line
	Time    time.Time // the line's own time=, zero when absent; millisecond precision
	Msg     string
	Attrs   map[string]string
}

// ParseLogLine splits a slog text line into its fields. A value is either a
// Go-quoted string or runs to the next space. A line that is not in that
// format comes back with only Raw set.
func ParseLogLine(s string) LogLine {
	l := LogLine{Raw: s}
	rest := s
	for rest != "" {
		rest = strings.TrimLeft(rest, " ")
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 || strings.ContainsAny(rest[:eq], " \"") {
			break
		}
		key := rest[:eq]
		rest = rest[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			sp := strings.IndexByte(rest, ' ')
			if sp < 0 {
				sp = len(rest)
			}
			val, rest = rest[:sp], rest[sp:]
		}
		switch key {
		case "time":
			if t, err := time.Parse(time.RFC3339Nano, val); err == nil {
				l.Time = t
			}
		case "msg":
			l.Msg = val
		default:
			if l.Attrs == nil {
				l.Attrs = make(map[string]string)
			}
			l.Attrs[key] = val
		}
	}
	return l
}

// When is the line's own time, or when it was read if it has none.
func (l *LogLine) When() time.Time {
	if l.Time.IsZero() {
		return l.Arrived
	}
	return l.Time
}

// Uint returns the attribute key as a number.
func (l *LogLine) Uint(key string) (uint64, bool) {
	v, err := strconv.ParseUint(l.Attrs[key], 10, 64)
	return v, err == nil
}

// ProducedBlock parses the leader's "Produced block H with N messages".
func (l *LogLine) ProducedBlock() (height uint64, messages int, ok bool) {
	if !strings.HasPrefix(l.Msg, "Produced block ") {
		return 0, 0, false
	}
	_, err := fmt.Sscanf(l.Msg, "Produced block %d with %d messages", &height, &messages)
	return height, messages, err == nil
}

// StoredBlocks parses a peer's debug line "Stored blocks" from=A to=B.
func (l *LogLine) StoredBlocks() (from, to uint64, ok bool) {
	if l.Msg != "Stored blocks" {
		return 0, 0, false
	}
	from, ok1 := l.Uint("from")
	to, ok2 := l.Uint("to")
	return from, to, ok1 && ok2 && from <= to
}

// ReceivedBlock parses a peer's debug line "Received block by gossip" height=H.
func (l *LogLine) ReceivedBlock() (height uint64, ok bool) {
	if l.Msg != "Received block by gossip" {
		return 0, false
	}
	return l.Uint("height")
}

// ChainVerified parses "Chain integrity verified: N blocks" took=D.
func (l *LogLine) ChainVerified() (blocks uint64, took time.Duration, ok bool) {
	if !strings.HasPrefix(l.Msg, "Chain integrity verified: ") {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(l.Msg, "Chain integrity verified: %d blocks", &blocks); err != nil {
		return 0, 0, false
	}
	took, _ = time.ParseDuration(l.Attrs["took"])
	return blocks, took, true
}
