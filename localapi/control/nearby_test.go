package control

import "testing"

// TestPeopleNearbyLine: the people of every peer, named by display name
// (else localpart) and a short server name, at most max of them.
func TestPeopleNearbyLine(t *testing.T) {
	peers := []Peer{
		{ServerName: "anna-laptop-t4bori.local", People: []Person{{UserID: "@anna:anna-laptop-t4bori.local", DisplayName: "Anna"}}},
		{ServerName: "quiet.local"},
		{ServerName: "ben.example.org", People: []Person{{UserID: "@bob:ben.example.org", DisplayName: "Bob Builder"}, {UserID: "@zed:ben.example.org"}}},
	}
	for _, c := range []struct {
		max  int
		want string
	}{
		{5, "People nearby: Anna (anna-laptop-…), Bob Builder (ben.example.org), zed (ben.example.org)"},
		{1, "People nearby: Anna (anna-laptop-…) and 2 more"},
	} {
		if got := PeopleNearby(peers, c.max); got != c.want {
			t.Errorf("max %d: %q, want %q", c.max, got, c.want)
		}
	}
	if got := PeopleNearby(peers[1:2], 5); got != "" {
		t.Errorf("no people: %q", got)
	}
}
