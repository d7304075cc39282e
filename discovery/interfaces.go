package discovery

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"time"
)

// The interfaces discovery runs on: which ones, their addresses, and
// noticing when they change (a new address is announced at once).

// iface is one interface discovery runs on.
type iface struct {
	ifi   net.Interface
	addrs []netip.Prefix
}

// checkNetworks reads the interfaces; when they or their addresses
// changed it joins the group on new ones, announces again (twice, §8.3)
// and queries again from the shortest interval, since the peers reachable
// may have changed with the network.
func (s *Service) checkNetworks(now time.Time) {
	s.setInterfaces(listInterfaces(s.cfg.Interfaces), now)
}

// setInterfaces is checkNetworks after reading the interfaces.
func (s *Service) setInterfaces(ifs []iface, now time.Time) {
	key := fmt.Sprint(ifs)
	if key == s.netKey {
		return
	}
	s.netKey, s.ifs = key, ifs
	s.mu.Lock()
	s.ifsSnap = ifs
	s.mu.Unlock()
	// Join on every change, not only on new interfaces: a link that went
	// down and up, or was re-created under the same index, may have lost
	// the membership. Joining twice fails harmlessly (EADDRINUSE).
	for _, i := range ifs {
		if s.conn == nil {
			continue
		}
		if err := s.conn.JoinGroup(&i.ifi, mdnsGroup); err != nil && !s.joined[i.ifi.Index] {
			slog.Debug("LAN discovery: cannot join the mDNS group", "interface", i.ifi.Name, "err", err)
			continue
		}
		s.joined[i.ifi.Index] = true
	}
	if len(ifs) == 0 {
		slog.Debug("LAN discovery: no interface to run on")
		return
	}
	if s.announce {
		s.annLeft, s.nextAnn = 2, now
	}
	s.queryEvery = 0
	s.nextQuery = now.Add(firstQueryDelay + time.Duration(rand.Int64N(int64(100*time.Millisecond))))
}

// listInterfaces returns the interfaces to run on and their addresses.
func listInterfaces(names []string) []iface {
	all, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []iface
	for _, ifi := range all {
		if len(names) > 0 {
			if !slices.Contains(names, ifi.Name) {
				continue
			}
		} else if ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 {
			continue
		}
		i := iface{ifi: ifi}
		as, _ := ifi.Addrs()
		for _, a := range as {
			if n, ok := a.(*net.IPNet); ok {
				if p, ok := netip.AddrFromSlice(n.IP); ok {
					ones, _ := n.Mask.Size()
					i.addrs = append(i.addrs, netip.PrefixFrom(p.Unmap(), ones))
				}
			}
		}
		out = append(out, i)
	}
	return out
}

// String makes the fingerprint of checkNetworks: flags included, so a
// cable or Wi-Fi link coming back (FlagRunning) announces us again.
func (i iface) String() string { return fmt.Sprint(i.ifi.Index, i.ifi.Name, i.ifi.Flags, i.addrs) }

// addrsFor is what we announce on an interface: the advertised address
// if it is on that interface, else (listening everywhere) the
// interface's IPv4 and non-link-local IPv6 addresses (RFC 6762 §15: give
// each link the addresses valid on it).
func (s *Service) addrsFor(i iface) []netip.Addr {
	var out []netip.Addr
	for _, p := range i.addrs {
		a := p.Addr()
		switch {
		case s.ip.IsValid():
			if a == s.ip {
				return []netip.Addr{a}
			}
		case a.Is4() || !a.IsLinkLocalUnicast():
			out = append(out, a)
		}
	}
	if s.ip.IsValid() || len(out) > maxAddrs {
		return out[:min(len(out), maxAddrs)]
	}
	return out
}

// usable keeps the announced addresses federation may dial: on a subnet
// of the interface the announcement came in on (all our interfaces when
// unknown), never loopback, multicast or unspecified, and no IPv6
// link-local (it needs a zone the resolver does not carry). IPv4 first.
func (s *Service) usable(addrs []netip.Addr, in *iface) []netip.Addr {
	var nets []netip.Prefix
	if in != nil {
		nets = in.addrs
	} else {
		for _, i := range s.ifs {
			nets = append(nets, i.addrs...)
		}
	}
	var out []netip.Addr
	for _, a := range addrs {
		if a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() || (a.Is6() && a.IsLinkLocalUnicast()) {
			continue
		}
		if slices.ContainsFunc(nets, func(p netip.Prefix) bool { return p.Masked().Contains(a) }) && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(a, b netip.Addr) int {
		switch {
		case a.Is4() && !b.Is4():
			return -1
		case !a.Is4() && b.Is4():
			return 1
		}
		return 0
	})
	return out
}
