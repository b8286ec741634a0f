package api

import (
	"encoding/json"
	"testing"
)

// valuesAt counts what a JSON decoder would find one level inside the
// body's fields, whatever the strings hold: escaped quotes, backslashes
// before a closing quote, brackets and commas.
func TestValuesAt(t *testing.T) {
	for _, c := range []struct {
		body string
		want int
	}{
		{`{"messages":[]}`, 1},
		{`{"messages":[{}]}`, 1},
		{`{"messages":[{},{},{}]}`, 3},
		{`{"messages":[{"content":"a,b,[c],{d}"},{}]}`, 2},
		{`{"messages":[{"content":"say \"x,y\""},{}]}`, 2},
		{`{"messages":[{"content":"ends in a backslash \\"},{},{}]}`, 3},
		{`{"messages":[{"content":"\\\"still,inside\\\\"},{}]}`, 2},
		{`{"a":[1,2],"messages":[{}]}`, 3},
		{`{"messages":[[1,2,3],[4]]}`, 2},
		{`{"messages":[{"x":"unterminated,`, 1},
	} {
		if got := valuesAt([]byte(c.body), 2); got != c.want {
			t.Errorf("valuesAt(%s, 2) = %d, want %d", c.body, got, c.want)
		}
		if c.want > 0 && json.Valid([]byte(c.body)) {
			var v struct{ Messages []json.RawMessage }
			if err := json.Unmarshal([]byte(c.body), &v); err == nil && len(v.Messages) > c.want {
				t.Errorf("%s: the decoder finds %d messages, more than the bound %d", c.body, len(v.Messages), c.want)
			}
		}
	}
}
