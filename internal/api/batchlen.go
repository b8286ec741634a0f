package api

import "bytes"

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

// batchValues returns the quick bound of valuesAt for a batch body when it
// is over MaxBatch, and zero otherwise. The bound counts every value one
// level inside the body's fields, so it is exact for a body that holds the
// messages field alone, and a body that holds more than MaxBatch values at
// that depth is refused whatever its keys: no decoder is trusted to count
// the messages field (a key may repeat, or match in another case) before
// it has decoded every element.
func batchValues(body []byte) int {
	if n := valuesAt(body, 2); n > MaxBatch {
		return n
	}
	return 0
}
