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
