package room

import "testing"

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "evil.com", true},
		{"evil.com", "evil.com", true},
		{"evil.com", "EVIL.com", true},
		{"EVIL.COM", "evil.com", true},
		{"evil.com", "evil.co", false},
		{"evil.com", "notevil.com", false},
		{"*.evil.com", "evil.com", false},
		{"*.evil.com", "a.b.evil.com", true},
		{"*evil.com", "evil.com", true},
		{"ev?l.com", "evil.com", true},
		{"ev?l.com", "evl.com", false},
		{"ev?l.com", "eviil.com", false},
		{"??", "ab", true},
		{"??", "abc", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"*.*", "localhost", false},
		{"**", "x", true},
		{"ä*", "Äpfel.de", true},
	}
	for _, c := range cases {
		if got := globMatch(c.pattern, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

func TestServerACLAllows(t *testing.T) {
	cases := []struct {
		content string
		server  string
		want    bool
	}{
		// No allow list allows nobody.
		{`{}`, "good.org", false},
		{`{"deny": ["evil.com"]}`, "good.org", false},
		{`{"allow": ["*"]}`, "good.org", true},
		{`{"allow": ["*"], "deny": ["evil.com"]}`, "evil.com", false},
		// The port is never considered.
		{`{"allow": ["*"], "deny": ["evil.com"]}`, "evil.com:8448", false},
		{`{"allow": ["good.org"]}`, "good.org:1234", true},
		// Deny wins over allow.
		{`{"allow": ["evil.com"], "deny": ["*.com"]}`, "evil.com", false},
		{`{"allow": ["*.org"]}`, "good.org", true},
		{`{"allow": ["*.org"]}`, "evil.com", false},
		// IP literals: allowed unless allow_ip_literals is the boolean false.
		{`{"allow": ["*"]}`, "1.2.3.4", true},
		{`{"allow": ["*"], "allow_ip_literals": false}`, "1.2.3.4", false},
		{`{"allow": ["*"], "allow_ip_literals": false}`, "1.2.3.4:8448", false},
		{`{"allow": ["*"], "allow_ip_literals": false}`, "[::1]:8448", false},
		{`{"allow": ["*"], "allow_ip_literals": false}`, "[2001:db8::1]", false},
		{`{"allow": ["*"], "allow_ip_literals": false}`, "good.org", true},
		{`{"allow": ["*"], "allow_ip_literals": "false"}`, "1.2.3.4", true},
		{`{"allow": ["[::1]"]}`, "[::1]:8448", true},
		// Entries that are not strings are ignored.
		{`{"allow": [1, null, "good.org"], "deny": [true]}`, "good.org", true},
		// A malformed list leaves nothing allowed.
		{`{"allow": "*"}`, "good.org", false},
	}
	for _, c := range cases {
		if got := parseACL([]byte(c.content)).allows(c.server); got != c.want {
			t.Errorf("ACL %s allows %q = %v, want %v", c.content, c.server, got, c.want)
		}
	}
}
