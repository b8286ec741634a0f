package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sync/semaphore"
)

func newBodyReader(r io.Reader, budget *semaphore.Weighted, limit int64) *bodyReader {
	return &bodyReader{
		r: r, rc: http.NewResponseController(httptest.NewRecorder()), ctx: context.Background(),
		budget: budget, limit: limit, start: time.Now(), grace: time.Minute, maxTime: time.Hour,
	}
}

// A body is read whole whatever its Content-Length says (right, too small,
// too large, absent), and holds budget for at least what it read.
func TestBodyReaderReadsAll(t *testing.T) {
	body := strings.Repeat("kimura ", 30000) // 210,000 bytes: the buffer grows past firstBodyBuffer
	for _, hint := range []int64{-1, 0, 1, int64(len(body)) - 1, int64(len(body)), int64(len(body)) + 1, 1 << 30} {
		budget := semaphore.NewWeighted(1 << 30)
		br := newBodyReader(iotest.HalfReader(strings.NewReader(body)), budget, 1<<20)
		got, err := br.readAll(hint)
		if err != nil || string(got) != body {
			t.Errorf("hint %d: read %d bytes, %v; want all %d", hint, len(got), err, len(body))
		}
		if br.held < int64(len(body)) || br.held > 4*int64(len(body)) {
			t.Errorf("hint %d: holds %d bytes of budget for a body of %d", hint, br.held, len(body))
		}
		// A right Content-Length bounds the buffer's growth: no doubling
		// past what the body can hold.
		if hint == int64(len(body)) && br.held != hint+1 {
			t.Errorf("hint %d, the body's length: holds %d bytes of budget, want %d", hint, br.held, hint+1)
		}
	}
	br := newBodyReader(iotest.ErrReader(io.ErrUnexpectedEOF), semaphore.NewWeighted(1<<20), 1<<20)
	if _, err := br.readAll(10); err != io.ErrUnexpectedEOF {
		t.Errorf("a failing reader: %v, want its error", err)
	}
}

// A body that needs budget that bodies being read hold gives up after
// budgetWait with errNoBudget, rather than waiting for good while holding
// part of the budget itself.
func TestBodyReaderGivesUpWithoutBudget(t *testing.T) {
	budget := semaphore.NewWeighted(160 << 10) // the first body grows to hold 128 KiB of it
	held := newBodyReader(strings.NewReader(strings.Repeat("x", 90<<10)), budget, 1<<20)
	if _, err := held.readAll(-1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	br := newBodyReader(strings.NewReader(strings.Repeat("y", 50<<10)), budget, 1<<20)
	if _, err := br.readAll(-1); err != errNoBudget {
		t.Fatalf("reading past the budget: %v, want errNoBudget", err)
	}
	if waited := time.Since(start); waited < budgetWait {
		t.Errorf("gave up after %v, before budgetWait (%v)", waited, budgetWait)
	}
	budget.Release(br.held)
	budget.Release(held.held)
	if !budget.TryAcquire(160 << 10) {
		t.Error("budget not whole again after both released what they held")
	}
}
