package store

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotFound is returned when a block or message is not in the store.
var ErrNotFound = errors.New("store: not found")

// ErrLocked is returned by Open when another process holds the data directory.
var ErrLocked = errors.New("store: data directory is in use by another process")

// CorruptionError says where the stored chain is damaged and how. Height is
// the first bad height found; Reason is a sentence for the operator.
type CorruptionError struct {
	Height uint64
	Reason string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("chain corrupt at height %d: %s", e.Height, e.Reason)
}

// corrupt makes a CorruptionError whose reason is the first line of the
// formatted text: Pebble's corruption errors carry a second line
// ("<corruption detail carrier>") that says nothing to an operator.
func corrupt(height uint64, format string, args ...any) *CorruptionError {
	reason, _, _ := strings.Cut(fmt.Sprintf(format, args...), "\n")
	return &CorruptionError{Height: height, Reason: reason}
}
