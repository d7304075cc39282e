package turn

import (
	"net"
	"net/netip"

	"github.com/hearth-chat/hearth/internal/netscope"
)

// Scope says who may use the relay and whom it relays to.
type Scope struct {
	// LocalNets is the networks this machine is on (192.168.1.0/24 from
	// 192.168.1.23/24); read on each new permission so that a laptop that
	// changed networks serves the new one. Nil: none.
	LocalNets func() []netip.Prefix
	// Allow are networks the relay also serves, whatever they are
	// (turn_allow_networks; 127.0.0.0/8 for a browser test on loopback).
	Allow []netip.Prefix
	// Internet: clients and peers may also be anywhere public
	// (federation = internet).
	Internet bool
}

func (s Scope) localNets() []netip.Prefix {
	if s.LocalNets == nil {
		return nil
	}
	return s.LocalNets()
}

// ClientAllowed reports whether a client at ip may talk to the TURN
// listener: loopback, the local networks, the allowed ones, and anyone
// public when the server is open to the internet.
func (s Scope) ClientAllowed(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	switch {
	case ip.IsLoopback(), onNets(ip, s.Allow), onNets(ip, s.localNets()):
		return true
	}
	return s.Internet && netscope.Public(ip)
}

// PeerAllowed reports whether the relay may send to (and take data from)
// a peer at ip. Loopback, link-local, multicast and unspecified addresses
// are refused unless an allowed network names them: relaying there would
// let a TURN client reach services of this machine or of the LAN's
// routers that are not meant for it (SSRF through the relay).
func (s Scope) PeerAllowed(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return false
	}
	if onNets(ip, s.Allow) {
		return true
	}
	if ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return false
	}
	if onNets(ip, s.localNets()) {
		return true
	}
	return s.Internet && netscope.Public(ip)
}

// permissionHandler is pion's hook for CreatePermission and ChannelBind.
func (s Scope) permissionHandler(_ net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	return ok && s.PeerAllowed(ip)
}

func onNets(ip netip.Addr, nets []netip.Prefix) bool {
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// addrIP is the IP of a UDP or TCP address.
func addrIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
