package netns

import (
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
)

// TestHostsMeetOnlyOnTheBridge: a host reaches another's address through
// the bridge, from a socket Do opened inside it, and has no route
// anywhere else.
func TestHostsMeetOnlyOnTheBridge(t *testing.T) {
	l, err := New()
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("cannot make network namespaces here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err := l.AddHost("anna")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost("anna") // two machines may share a host name
	if err != nil {
		t.Fatal(err)
	}
	if a.IP == b.IP || a.NS == b.NS {
		t.Fatalf("two hosts share an address or namespace: %+v %+v", a, b)
	}
	var ln net.Listener
	if err := a.Do(func() (err error) { ln, err = net.Listen("tcp", a.IP+":7000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	c, err := b.DialContext(t.Context(), "tcp", a.IP+":7000")
	if err != nil {
		t.Fatalf("b cannot reach a over the bridge: %v", err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read from a: %q, %v", buf, err)
	}
	c.Close()
	if out, err := b.Exec("ip", "route", "show", "default"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("b has a default route (%v): %s", err, out)
	}
	// Wrap runs a program under the host's own host name.
	argv := b.Wrap([]string{"hostname"}, t.TempDir())
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "anna" {
		t.Fatalf("hostname under Wrap: %q, %v", out, err)
	}
}

// TestLegJoinsTwoLANs: a host with a leg in a second LAN is reachable
// from both, and the hosts of the two LANs cannot reach each other: the
// layout of a relay between two peers that have no direct path.
func TestLegJoinsTwoLANs(t *testing.T) {
	la, err := New()
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("cannot make network namespaces here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	lb, err := NewSubnet("10.48.0.")
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	mid, err := la.AddHost("mid")
	if err != nil {
		t.Fatal(err)
	}
	leg, err := lb.AddLeg(mid)
	if err != nil {
		t.Fatal(err)
	}
	a, err := la.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := lb.AddHost("b")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.IP, "10.48.0.") || leg != "10.48.0.254" {
		t.Fatalf("b at %s, the leg at %s: want both on 10.48.0.0/24", b.IP, leg)
	}
	var ln net.Listener
	if err := mid.Do(func() (err error) { ln, err = net.Listen("tcp", ":7001"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, c := range []struct {
		h  *Host
		to string
	}{{a, mid.IP}, {b, leg}} {
		conn, err := c.h.DialContext(t.Context(), "tcp", c.to+":7001")
		if err != nil {
			t.Fatalf("%s cannot reach the middle host at %s: %v", c.h.NS, c.to, err)
		}
		conn.Close()
	}
	// No route: the error is immediate, not a timeout.
	if _, err := a.DialContext(t.Context(), "udp", b.IP+":9"); err == nil {
		t.Fatal("a has a route to b on the other LAN")
	}
}
