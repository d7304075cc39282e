package daemon

import (
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// The client listener's addresses as its two kinds of clients reach it.
// client_listen is loopback by default; bound to every interface
// (0.0.0.0:8008 or [::]:8008) it also serves phones and other computers
// on the LAN (docs/getting-started.md, "Use Hearth from your phone").

// ClientAddr is the client listener's address as a program on this
// computer dials it (the CLI, the tray, the console's links): an address
// that listens on every interface is dialled on loopback, since browsers
// and Windows refuse to dial 0.0.0.0, and the control API answers only
// to a loopback host.
func (c Config) ClientAddr() string { return loopbackDial(c.ClientListen) }

func loopbackDial(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		// "::" listens on IPv4 too (Go makes it dual-stack).
		return net.JoinHostPort("127.0.0.1", port)
	}
	return listen
}

// clientLANURL is the client API's URL for a phone on the LAN, given the
// listener's address: "" while it listens on loopback (or on a name,
// which only the person who chose it can say is reachable). Bound to
// every interface, it is the address of this machine on its default
// route (route, when valid, is the source address the system would use
// to reach the internet) or else the first private IPv4 address among
// addrs: a phone is on the network the machine's traffic goes out on,
// and a VM or container bridge (also private) is a worse guess than
// that route.
func clientLANURL(listen string, route netip.Addr, addrs []net.Addr) string {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return ""
	}
	ip, port := ap.Addr().Unmap(), strconv.Itoa(int(ap.Port()))
	switch {
	case ip.IsLoopback():
		return ""
	case !ip.IsUnspecified():
		return "http://" + net.JoinHostPort(ip.WithZone("").String(), port)
	}
	v6 := ip.Is6() // "::" serves both families; 0.0.0.0 IPv4 only
	var cands []netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		c, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		c = c.Unmap()
		if c.IsLoopback() || c.IsLinkLocalUnicast() || !c.IsGlobalUnicast() || (c.Is6() && !v6) {
			continue
		}
		cands = append(cands, c)
	}
	pick := netip.Addr{}
	route = route.Unmap()
	for _, c := range cands {
		if c == route {
			pick = c
		}
	}
	for _, want := range []func(netip.Addr) bool{
		func(c netip.Addr) bool { return c.Is4() && c.IsPrivate() },
		netip.Addr.Is4,
		func(netip.Addr) bool { return true },
	} {
		for _, c := range cands {
			if !pick.IsValid() && want(c) {
				pick = c
			}
		}
	}
	if !pick.IsValid() {
		return ""
	}
	return "http://" + net.JoinHostPort(pick.String(), port)
}

// defaultRouteIP is the source address this machine would use to reach
// the internet: connecting a UDP socket only asks the routing table and
// sends nothing. 192.0.2.1 is TEST-NET-1 (RFC 5737), never anyone's host.
// Invalid when there is no default route.
func defaultRouteIP() netip.Addr {
	conn, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return netip.Addr{}
	}
	defer conn.Close()
	ap, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// lanClientURL is clientLANURL for the running listener.
func (d *Daemon) lanClientURL() string {
	ap, err := netip.ParseAddrPort(d.Addr())
	if err != nil || !ap.Addr().IsUnspecified() {
		return clientLANURL(d.Addr(), netip.Addr{}, nil)
	}
	addrs, _ := net.InterfaceAddrs()
	return clientLANURL(d.Addr(), defaultRouteIP(), addrs)
}

// clientURL is the client API's URL on this computer.
func (d *Daemon) clientURL() string { return "http://" + loopbackDial(d.Addr()) }

// mdnsLabel is a host name the OS can answer for over mDNS.
var mdnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// lanNameURL is the client API's URL on the LAN by this machine's mDNS
// name (<host name>.local, which macOS, Windows and Linux with Avahi
// answer for), given its URL by address: "" without a LAN URL or a host
// name that is a valid label. Element X on Android refuses plain http to
// an address given in numbers but allows it to .local names (its network
// security config), so this is the address a phone is shown first.
func lanNameURL(lanURL, hostname string) string {
	if lanURL == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(strings.TrimPrefix(lanURL, "http://"))
	label, _, _ := strings.Cut(strings.ToLower(hostname), ".")
	if err != nil || !mdnsLabel.MatchString(label) {
		return ""
	}
	return "http://" + label + ".local:" + port
}

// lanClientNameURL is lanNameURL for the running listener.
func (d *Daemon) lanClientNameURL(lanURL string) string {
	name, _ := os.Hostname()
	return lanNameURL(lanURL, name)
}
