package api

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// A batch body's messages are counted before they are decoded: decoding
// allocates a Submission for each element, and a body of MaxBody bytes of
// "{}," would make 44 million of them (gigabytes) before the count could be
// refused.

// valuesAt returns an upper bound on the number of values inside the
// containers at depth (1: inside the top-level value) of the JSON text b:
// one for each container opened there, and one more for each comma between
// its elements. It reads b's structure only, minding strings and their
// escapes, and never allocates; on a malformed b it still returns some
// bound, and the decoder that follows refuses b.
func valuesAt(b []byte, depth int) int {
	n, d := 0, 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			// Strings are most of a batch: jump to the next quote that no
			// odd run of backslashes escapes.
			for j := i + 1; ; j++ {
				k := bytes.IndexByte(b[j:], '"')
				if k < 0 {
					return n
				}
				j += k
				escapes := 0
				for e := j - 1; e > i && b[e] == '\\'; e-- {
					escapes++
				}
				if escapes%2 == 0 {
					i = j
					break
				}
			}
		case '{', '[':
			d++
			if d == depth {
				n++
			}
		case '}', ']':
			d--
		case ',':
			if d == depth {
				n++
			}
		}
	}
	return n
}

// countedArray, as a JSON field, counts the values of the array it is
// given without decoding them.
type countedArray struct{ n int }

func (a *countedArray) UnmarshalJSON(b []byte) error {
	if b[0] != '[' {
		return fmt.Errorf("messages is %.20s, not an array", b)
	}
	a.n = valuesAt(b, 1)
	return nil
}

// batchLen returns at least the number of messages in the batch body, when
// that could be more than MaxBatch, and zero otherwise. The quick bound,
// every value one level inside the body's fields, is exact for a body that
// has the messages field alone; only when it passes MaxBatch is the body
// decoded, with encoding/json and without its elements, to count the
// messages field itself (its key matched as encoding/json matches it).
func batchLen(body []byte) (int, error) {
	if valuesAt(body, 2) <= MaxBatch {
		return 0, nil
	}
	var req struct {
		Messages *countedArray `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, err
	}
	if req.Messages == nil || req.Messages.n <= MaxBatch {
		return 0, nil
	}
	return req.Messages.n, nil
}
