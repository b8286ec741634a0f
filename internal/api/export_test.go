package api

// BatchSlots returns how many POST /messages bodies s holds a slot for now,
// and how many slots it has (tests only).
func (s *Server) BatchSlots() (held, total int) { return len(s.batches), cap(s.batches) }
