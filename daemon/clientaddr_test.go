package daemon

import (
	"net"
	"net/netip"
	"testing"
)

// TestClientAddr: programs on this computer (CLI, tray, the console's
// links, the control client) dial a client listener bound to every
// interface on loopback: browsers refuse 0.0.0.0 and the control API
// answers only a loopback Host.
func TestClientAddr(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:8008":    "127.0.0.1:8008",
		"0.0.0.0:8008":      "127.0.0.1:8008",
		"[::]:8008":         "127.0.0.1:8008",
		":8008":             "127.0.0.1:8008",
		"192.168.1.23:8008": "192.168.1.23:8008",
		"localhost:8008":    "localhost:8008",
	} {
		if got := (Config{ClientListen: listen}).ClientAddr(); got != want {
			t.Errorf("client_listen %s: dialled at %s, want %s", listen, got, want)
		}
	}
}

func ipNet(s string) net.Addr {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

// TestClientLANURL: the address the console's QR code gives a phone.
// Loopback gives none; a LAN address is itself; every interface gives
// this machine's address on its default route, else its first private
// IPv4 address, never loopback, link-local or (for 0.0.0.0) IPv6.
func TestClientLANURL(t *testing.T) {
	addrs := []net.Addr{ipNet("127.0.0.1/8"), ipNet("::1/128"), ipNet("fe80::1/64"), ipNet("172.17.0.1/16"),
		ipNet("192.168.1.23/24"), ipNet("fd00::5/64"), ipNet("100.101.102.103/10")}
	route := netip.MustParseAddr("192.168.1.23")
	for _, c := range []struct {
		listen string
		route  netip.Addr
		addrs  []net.Addr
		want   string
	}{
		{"127.0.0.1:8008", route, addrs, ""},
		{"[::1]:8008", route, addrs, ""},
		{"192.168.1.23:8008", netip.Addr{}, nil, "http://192.168.1.23:8008"},
		{"[fd00::5]:8008", netip.Addr{}, nil, "http://[fd00::5]:8008"},
		{"0.0.0.0:8008", route, addrs, "http://192.168.1.23:8008"},
		{"[::]:8008", route, addrs, "http://192.168.1.23:8008"},
		// No default route: the first private IPv4 address.
		{"0.0.0.0:8008", netip.Addr{}, addrs, "http://172.17.0.1:8008"},
		// A default route through an address that is not an interface's
		// (a VPN gone, say) is no guess at all.
		{"0.0.0.0:8008", netip.MustParseAddr("10.9.9.9"), addrs[4:], "http://192.168.1.23:8008"},
		// Only IPv6 besides loopback: none for 0.0.0.0, the address for ::.
		{"0.0.0.0:8008", netip.Addr{}, []net.Addr{ipNet("127.0.0.1/8"), ipNet("fd00::5/64")}, ""},
		{"[::]:8008", netip.Addr{}, []net.Addr{ipNet("127.0.0.1/8"), ipNet("fd00::5/64")}, "http://[fd00::5]:8008"},
		{"0.0.0.0:8008", netip.Addr{}, nil, ""},
	} {
		if got := clientLANURL(c.listen, c.route, c.addrs); got != c.want {
			t.Errorf("listening on %s (route %v): %q, want %q", c.listen, c.route, got, c.want)
		}
	}
}

// TestStatusClientOnLoopback: a daemon on loopback (the default) gives
// phones no address, and this computer its own.
func TestStatusClientOnLoopback(t *testing.T) {
	d, _ := startTestDaemon(t)
	st := (&controlBackend{d: d}).Status()
	if st.Listeners["client"] != "http://"+d.Addr() {
		t.Errorf("client %q, want http://%s", st.Listeners["client"], d.Addr())
	}
	if lan, ok := st.Listeners["client_lan"]; ok {
		t.Errorf("a loopback listener gives phones %q", lan)
	}
}

// TestControlEndpointEveryInterface: with client_listen on every
// interface, the CLI and tray reach the control API on loopback.
func TestControlEndpointEveryInterface(t *testing.T) {
	_, cfg := startTestDaemon(t)
	_, port, _ := net.SplitHostPort(cfg.ClientListen)
	cfg.ClientListen = "0.0.0.0:" + port
	ep, err := Control(cfg)
	if err != nil || ep.Addr != "127.0.0.1:"+port {
		t.Fatalf("control endpoint %+v %v, want 127.0.0.1:%s", ep, err, port)
	}
}

// TestLANNameURL: the .local name of the machine for phones that refuse
// plain http to a numeric address, only from a host name that is a valid
// DNS label.
func TestLANNameURL(t *testing.T) {
	for _, c := range []struct{ lan, host, want string }{
		{"http://192.168.1.23:8008", "mybox", "http://mybox.local:8008"},
		{"http://192.168.1.23:8008", "MyBox.lan", "http://mybox.local:8008"},
		{"http://192.168.1.23:8008", "Johns-MacBook.local", "http://johns-macbook.local:8008"},
		{"http://[fd00::5]:8008", "mybox", "http://mybox.local:8008"},
		{"http://192.168.1.23:8008", "my_box", ""},
		{"http://192.168.1.23:8008", "-bad", ""},
		{"http://192.168.1.23:8008", "", ""},
		{"", "mybox", ""},
	} {
		if got := lanNameURL(c.lan, c.host); got != c.want {
			t.Errorf("lanNameURL(%q, %q) = %q, want %q", c.lan, c.host, got, c.want)
		}
	}
}
