package api

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadAllWithSizeHint reads bodies with a size hint that is right, too
// small, too large or absent, and wants the whole body every time.
func TestReadAllWithSizeHint(t *testing.T) {
	body := strings.Repeat("kimura ", 1000)
	for _, hint := range []int64{-1, 0, 1, int64(len(body)) - 1, int64(len(body)), int64(len(body)) + 1, 1 << 20} {
		got, err := readAll(iotest.OneByteReader(strings.NewReader(body)), hint)
		if err != nil || string(got) != body {
			t.Errorf("hint %d: read %d bytes, %v; want all %d", hint, len(got), err, len(body))
		}
	}
	if _, err := readAll(iotest.ErrReader(io.ErrUnexpectedEOF), 10); err != io.ErrUnexpectedEOF {
		t.Errorf("a failing reader: %v, want its error", err)
	}
}
