package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// LoadSpec is one load run against a node or the bare endpoint.
type LoadSpec struct {
	URL      string // base URL
	Batch    int    // messages per request: 1 sends POST /message, more POST /messages
	Clients  int    // concurrent requests at most
	Duration time.Duration
	// Rate is the offered load in messages per second; 0 means closed loop
	// (each client sends its next request when the last one is answered).
	// In open loop a request's latency counts from when it was due, so a
	// server that falls behind is charged for the queue it causes.
	Rate     float64
	From, To int // the pool messages to use, [From, To)
	// Wrap starts over from From when the messages run out, for a server
	// that does not refuse duplicates; per-message outcomes are not kept.
	Wrap bool
}

// LoadResult is what a load run saw. Message counts are per message, also
// for batches.
type LoadResult struct {
	Start, End time.Time // End: the last answer
	Sent       int       // messages in requests that were sent
	Acked      int       // answered 202, or "pending" in a batch result
	Refused    int       // answered with an error status
	Failed     int       // no answer (transport error): state unknown
	Codes      map[int]int
	FirstError string
	// Exhausted: the pool ran out before Duration was over, ExhaustedAt
	// after the start.
	Exhausted   bool
	ExhaustedAt time.Duration
	// Latencies of the answered requests (acknowledged or refused), in
	// milliseconds. A request that got no answer has none: its messages
	// are counted in Failed, and reports say the percentiles leave it out.
	Latencies []float64

	from     int
	submitUs []int64 // per message from From: when its request was started (or due), Unix µs; 0 unsent
	acked    []bool
}

// SubmitMicros returns when message i's request was started (or due in
// open loop), Unix microseconds, and whether it was sent.
func (r *LoadResult) SubmitMicros(i int) (int64, bool) {
	j := i - r.from
	if j < 0 || j >= len(r.submitUs) || r.submitUs[j] == 0 {
		return 0, false
	}
	return r.submitUs[j], true
}

// IsAcked reports whether message i was acknowledged.
func (r *LoadResult) IsAcked(i int) bool {
	j := i - r.from
	return j >= 0 && j < len(r.acked) && r.acked[j]
}

// Seconds is the length of the run, from the first request to the last answer.
func (r *LoadResult) Seconds() float64 { return r.End.Sub(r.Start).Seconds() }

type loadJob struct {
	unit int       // which request: messages [From+unit*Batch, From+(unit+1)*Batch)
	due  time.Time // open loop: when it was due
}

// workerStats is one client's share of a LoadResult.
type workerStats struct {
	sent, acked, refused, failed int
	codes                        map[int]int
	firstErr                     string
	lat                          []float64
	last                         time.Time
}

// RunLoad sends the pool's messages as spec says and returns what happened.
// Bodies are taken from the pool, so nothing is signed or encoded while
// the clock runs.
func RunLoad(ctx context.Context, pool *Pool, spec LoadSpec) (*LoadResult, error) {
	if spec.Batch < 1 || spec.Clients < 1 || spec.From < 0 || spec.To > pool.Len() || spec.From > spec.To {
		return nil, fmt.Errorf("bench: bad load %+v for a pool of %d", spec, pool.Len())
	}
	var bodies func(unit int) []byte
	path := "/message"
	if spec.Batch == 1 {
		bodies = func(u int) []byte { return pool.Body(spec.From + u) }
	} else {
		path = "/messages"
		if spec.From%spec.Batch != 0 {
			return nil, fmt.Errorf("bench: batch load must start at a multiple of %d", spec.Batch)
		}
		all := pool.BatchBodies(spec.Batch)
		first := spec.From / spec.Batch
		bodies = func(u int) []byte { return all[first+u] }
	}
	units := (spec.To - spec.From) / spec.Batch
	if units == 0 {
		return nil, fmt.Errorf("bench: a load of %d messages has no request of %d", spec.To-spec.From, spec.Batch)
	}

	res := &LoadResult{
		from: spec.From, submitUs: make([]int64, spec.To-spec.From), acked: make([]bool, spec.To-spec.From),
		Codes: make(map[int]int),
	}
	sub, err := newSubmitter(ctx, spec.URL, spec.Clients)
	if err != nil {
		return nil, err
	}
	defer sub.close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res.Start = time.Now()
	deadline := res.Start.Add(spec.Duration)
	var exhaustedAt atomic.Int64 // ns after the start; 0 while not
	exhaust := func() { exhaustedAt.CompareAndSwap(0, int64(max(time.Since(res.Start), 1))) }

	// next hands out work: a shared counter in closed loop, a paced
	// channel in open loop.
	var next func() (loadJob, bool)
	if spec.Rate <= 0 {
		var counter atomic.Int64
		next = func() (loadJob, bool) {
			if !time.Now().Before(deadline) || ctx.Err() != nil {
				return loadJob{}, false
			}
			u := int(counter.Add(1) - 1)
			if u >= units && !spec.Wrap {
				exhaust()
				return loadJob{}, false
			}
			return loadJob{unit: u}, true
		}
	} else {
		jobs := make(chan loadJob, 4096)
		// Seconds between requests, as a float: at a rate low enough, an
		// interval in a time.Duration overflows, and request dues computed
		// from it wrap around to before the deadline forever.
		every := float64(spec.Batch) / spec.Rate
		go func() {
			defer close(jobs)
			for u := 0; ; u++ {
				at := float64(u) * every
				if !(at < spec.Duration.Seconds()) {
					return
				}
				due := res.Start.Add(time.Duration(at * float64(time.Second)))
				if u >= units && !spec.Wrap {
					exhaust()
					return
				}
				if d := time.Until(due); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
						return
					}
				}
				select {
				case jobs <- loadJob{unit: u, due: due}:
				case <-ctx.Done():
					return
				}
			}
		}()
		next = func() (loadJob, bool) {
			j, ok := <-jobs
			return j, ok
		}
	}

	stats := make([]workerStats, spec.Clients)
	var wg sync.WaitGroup
	for w := range spec.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[w]
			st.codes = make(map[int]int)
			for {
				job, ok := next()
				if !ok {
					return
				}
				start := job.due
				if start.IsZero() {
					start = time.Now()
				}
				unit := job.unit % units
				lo := unit * spec.Batch
				if !spec.Wrap {
					for j := lo; j < lo+spec.Batch; j++ {
						res.submitUs[j] = start.UnixMicro()
					}
				}
				st.sent += spec.Batch
				acked, err := sub.post(ctx, path, bodies(unit), spec.Batch)
				end := time.Now()
				if err != nil {
					st.failed += spec.Batch
					if st.firstErr == "" {
						st.firstErr = err.Error()
					}
					continue
				}
				st.last = end
				st.lat = append(st.lat, float64(end.Sub(start).Microseconds())/1000)
				for j, code := range acked {
					if code == 0 {
						if !spec.Wrap {
							res.acked[lo+j] = true
						}
						st.acked++
					} else {
						st.refused++
						st.codes[code]++
					}
				}
			}
		}()
	}
	wg.Wait()
	res.End = res.Start
	for i := range stats {
		st := &stats[i]
		res.Sent += st.sent
		res.Acked += st.acked
		res.Refused += st.refused
		res.Failed += st.failed
		for c, n := range st.codes {
			res.Codes[c] += n
		}
		if res.FirstError == "" {
			res.FirstError = st.firstErr
		}
		res.Latencies = append(res.Latencies, st.lat...)
		if st.last.After(res.End) {
			res.End = st.last
		}
	}
	if at := exhaustedAt.Load(); at != 0 {
		res.Exhausted, res.ExhaustedAt = true, time.Duration(at)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}
