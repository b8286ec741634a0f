package api

import "net/http"

// BatchSlots returns how many POST /messages bodies s holds a slot for now,
// and how many slots it has (tests only).
func (s *Server) BatchSlots() (held, total int) { return len(s.batches), cap(s.batches) }

// Transports returns the HTTP transports of a client and of a server's
// forwarding to the leader (tests only).
func Transports(c *Client, s *Server) (client, forward http.RoundTripper) {
	return c.http.Transport, s.forward.Transport
}

// BodiesHeld reports whether any submission body holds bytes of the body
// budget now (tests only).
func (s *Server) BodiesHeld() bool {
	if s.bodies.TryAcquire(s.bodyBudget) {
		s.bodies.Release(s.bodyBudget)
		return false
	}
	return true
}
