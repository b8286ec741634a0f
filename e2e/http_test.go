package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPErrors: every error, including unknown paths and wrong methods, is
// a non-2xx status with a JSON body {"error": "reason"}.
func TestHTTPErrors(t *testing.T) {
	t.Parallel()
	n := startNode(t, "--leader", "--test-mode")
	n.WaitHeight(1, 5*time.Second)

	unknownID := strings.Repeat("ab", 32)
	tooMany := `{"messages": [` + strings.TrimSuffix(strings.Repeat(`{},`, 1001), ",") + `]}`
	cases := []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/no/such/route", "", http.StatusNotFound},
		{"GET", "/", "", http.StatusNotFound},
		{"GET", "/block/1/extra", "", http.StatusNotFound},
		{"POST", "/health", "{}", http.StatusMethodNotAllowed},
		{"POST", "/height", "{}", http.StatusMethodNotAllowed},
		{"DELETE", "/block/1", "", http.StatusMethodNotAllowed},
		{"PUT", "/latest", "{}", http.StatusMethodNotAllowed},
		{"GET", "/message", "", http.StatusMethodNotAllowed},
		{"GET", "/messages", "", http.StatusMethodNotAllowed},
		{"POST", "/blocks", "{}", http.StatusMethodNotAllowed},
		{"GET", "/block/abc", "", http.StatusBadRequest},
		{"GET", "/block/-1", "", http.StatusBadRequest},
		{"GET", "/block/1.5", "", http.StatusBadRequest},
		{"GET", "/block/999999", "", http.StatusNotFound},
		{"GET", "/message/zz", "", http.StatusBadRequest},
		{"GET", "/message/" + unknownID[:63], "", http.StatusBadRequest},
		{"GET", "/message/" + strings.Repeat("g", 64), "", http.StatusBadRequest},
		{"GET", "/message/" + unknownID, "", http.StatusNotFound},
		{"POST", "/message", "{not json", http.StatusBadRequest},
		{"POST", "/message", `{"sender": "` + unknownID + `", "nonce": 1, "content": "x"}`, http.StatusBadRequest},
		{"POST", "/message", `{"sender": "zz", "nonce": 1, "content": "x", "signature": "` + strings.Repeat("00", 64) + `"}`, http.StatusBadRequest},
		{"POST", "/messages", "[]", http.StatusBadRequest},
		{"POST", "/messages", tooMany, http.StatusBadRequest},
	}
	for _, tc := range cases {
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		r := n.request(tc.method, tc.path, "application/json", body)
		what := tc.method + " " + tc.path
		if len(tc.body) > 0 && len(tc.body) < 80 {
			what += " " + tc.body
		}
		if r.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", what, r.Code, r.Body, tc.want)
			continue
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q, want application/json", what, ct)
		}
		var eb struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(r.Body, &eb); err != nil || eb.Error == "" {
			t.Errorf("%s: body %q is not {\"error\": \"reason\"} (%v)", what, r.Body, err)
		}
	}
}
