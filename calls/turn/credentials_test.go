package turn

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The password is the TURN REST scheme's base64(HMAC-SHA1(secret,
// username)); the value below was computed by hand with
// `printf '%s' 1700000000:@alice:example.org | openssl dgst -sha1 -hmac s3cret -binary | base64`.
func TestPasswordMatchesHandComputedHMAC(t *testing.T) {
	if got, want := Password([]byte("s3cret"), "1700000000:@alice:example.org"), "oKcYiX5WLXOJY95WjqLUBOVFmFk="; got != want {
		t.Fatalf("Password = %q, want %q", got, want)
	}
	c := Issue([]byte("s3cret"), "@alice:example.org", time.Unix(1700000000-3600, 0), time.Hour)
	if c.Username != "1700000000:@alice:example.org" || c.Password != "oKcYiX5WLXOJY95WjqLUBOVFmFk=" || c.TTL != time.Hour {
		t.Fatalf("Issue = %+v", c)
	}
	if d := Issue([]byte("s3cret"), "@a:b", time.Unix(0, 0), 0); d.TTL != DefaultTTL || !strings.HasPrefix(d.Username, "86400:") {
		t.Fatalf("Issue with no ttl = %+v, want the default of a day", d)
	}
}

func TestParseUsernameRefusesExpiredAndMalformed(t *testing.T) {
	now := time.Unix(1700000000, 0)
	if u, err := ParseUsername("1700000000:@alice:example.org", now); err != nil || u != "@alice:example.org" {
		t.Fatalf("ParseUsername at its expiry = %q, %v", u, err)
	}
	for _, bad := range []string{"1699999999:@alice:example.org", "@alice:example.org", "soon:@a:b", "1700000001:", "1700000001"} {
		if _, err := ParseUsername(bad, now); err == nil {
			t.Errorf("ParseUsername(%q) accepted", bad)
		}
	}
}

func TestScopePeerPolicy(t *testing.T) {
	lan := func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")} }
	for _, c := range []struct {
		scope Scope
		peer  string
		want  bool
	}{
		{Scope{LocalNets: lan}, "192.168.1.20", true},
		{Scope{LocalNets: lan}, "::ffff:192.168.1.20", true},
		{Scope{LocalNets: lan}, "192.168.2.20", false}, // another private network
		{Scope{LocalNets: lan}, "127.0.0.1", false},
		{Scope{LocalNets: lan}, "::1", false},
		{Scope{LocalNets: lan}, "169.254.169.254", false}, // link-local: cloud metadata, routers
		{Scope{LocalNets: lan}, "fe80::1", false},
		{Scope{LocalNets: lan}, "224.0.0.251", false},
		{Scope{LocalNets: lan}, "0.0.0.0", false},
		{Scope{LocalNets: lan}, "93.184.216.34", false}, // the internet, in lan mode
		{Scope{LocalNets: lan, Internet: true}, "93.184.216.34", true},
		{Scope{LocalNets: lan, Internet: true}, "10.0.0.1", false},
		{Scope{LocalNets: lan, Internet: true}, "127.0.0.1", false},
		{Scope{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, "127.0.0.1", true},
		{Scope{Allow: []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}}, "169.254.1.1", true},
		{Scope{}, "192.168.1.20", false}, // no networks: nothing
	} {
		if got := c.scope.PeerAllowed(netip.MustParseAddr(c.peer)); got != c.want {
			t.Errorf("PeerAllowed(%s) with internet=%v allow=%v = %v, want %v", c.peer, c.scope.Internet, c.scope.Allow, got, c.want)
		}
	}
}

func TestScopeClients(t *testing.T) {
	lan := func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")} }
	for peer, want := range map[string]bool{"127.0.0.1": true, "::1": true, "192.168.1.9": true, "192.168.7.9": false, "93.184.216.34": false} {
		if got := (Scope{LocalNets: lan}).ClientAllowed(netip.MustParseAddr(peer)); got != want {
			t.Errorf("ClientAllowed(%s) = %v, want %v", peer, got, want)
		}
	}
	if !(Scope{LocalNets: lan, Internet: true}).ClientAllowed(netip.MustParseAddr("93.184.216.34")) {
		t.Error("internet mode refuses a public client")
	}
}

func TestBucketDropsOverRate(t *testing.T) {
	b := newBucket(1000)
	t0 := time.Unix(100, 0)
	if !b.take(600, t0) || !b.take(400, t0) {
		t.Fatal("the first second's 1000 bytes did not pass")
	}
	if b.take(1, t0) {
		t.Fatal("a byte over the burst passed")
	}
	if !b.take(500, t0.Add(500*time.Millisecond)) {
		t.Fatal("half a second later, 500 bytes did not pass")
	}
	if b.take(200, t0.Add(600*time.Millisecond)) {
		t.Fatal("200 bytes passed when 100 had refilled")
	}
	if !b.take(1000, t0.Add(time.Hour)) || b.take(1, t0.Add(time.Hour)) {
		t.Fatal("an idle hour saved more than one second's burst")
	}
	var none *bucket
	if !none.take(1<<30, t0) {
		t.Fatal("no limit refused")
	}
}
