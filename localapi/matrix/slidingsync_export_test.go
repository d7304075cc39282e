package matrix

// SlidingConnCount is how many sliding sync connections the server keeps.
func (s *Server) SlidingConnCount() int { return s.sliding.count() }
