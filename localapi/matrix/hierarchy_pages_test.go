package matrix

import "testing"

// TestHierarchyPagesBounded: the walks kept for GET /hierarchy's next_batch
// tokens are capped, so a client that starts walks and never finishes them
// cannot grow the server's memory for the ten minutes a token lives; the
// oldest walk goes first, and its token is then refused.
func TestHierarchyPagesBounded(t *testing.T) {
	var p hierarchyPages
	first := p.put(&hierarchyWalk{user: "@a:x"})
	for range hierarchyMaxWalks + 10 {
		p.put(&hierarchyWalk{user: "@a:x"})
	}
	if n := len(p.walks); n > hierarchyMaxWalks {
		t.Errorf("%d walks kept, want at most %d", n, hierarchyMaxWalks)
	}
	if _, err := p.take(first, func(*hierarchyWalk) error { return nil }); err == nil {
		t.Error("the oldest walk's token still works after the cap evicted it")
	}
	last := p.put(&hierarchyWalk{user: "@a:x"})
	if _, err := p.take(last, func(*hierarchyWalk) error { return nil }); err != nil {
		t.Errorf("the newest walk's token: %v", err)
	}
}
