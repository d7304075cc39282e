package ratelimit

import (
	"testing"
	"time"
)

// TestAllow: a key spends its burst at once, then waits for the refill;
// other keys are not affected; a refused Allow takes nothing.
func TestAllow(t *testing.T) {
	l := New[string](2, 10, 100)
	now := time.Unix(1000, 0)
	if w := l.Allow("a", 8, now); w != 0 {
		t.Fatalf("first 8: wait %v", w)
	}
	if w := l.Allow("a", 4, now); w != time.Second {
		t.Fatalf("4 more with 2 left: wait %v, want 1s", w)
	}
	if w := l.Allow("b", 10, now); w != 0 {
		t.Fatalf("another key: wait %v", w)
	}
	if w := l.Allow("a", 4, now.Add(time.Second)); w != 0 {
		t.Fatalf("after the refill: wait %v", w)
	}
	if w := l.Wait("a", 11, now.Add(time.Hour)); w == 0 {
		t.Fatal("more than the burst can never be allowed")
	}
}

// TestBounded: the map stays bounded however many keys it sees.
func TestBounded(t *testing.T) {
	l := New[int](1, 1, 64)
	now := time.Now()
	for i := range 1000 {
		l.Take(i, 1, now)
	}
	if n := l.Len(); n > 64 {
		t.Fatalf("%d buckets, want at most 64", n)
	}
}

// TestClientKey: an IPv4-mapped address counts as its IPv4 one, and an
// IPv6 host's /64 is one client.
func TestClientKey(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"[::ffff:192.0.2.1]:443", "192.0.2.1:80"},
		{"[2001:db8::1]:443", "[2001:db8::2]:8448"},
		{"[fe80::1%eth0]:1", "[fe80::2]:2"},
	} {
		if pa, pb := ClientKey(c.a), ClientKey(c.b); pa != pb || !pa.IsValid() {
			t.Errorf("%s → %v, %s → %v: want one valid prefix", c.a, pa, c.b, pb)
		}
	}
	if ClientKey("192.0.2.1:1") == ClientKey("192.0.2.2:1") {
		t.Error("two IPv4 hosts share a key")
	}
}
