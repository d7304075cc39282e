// Package netscope says which network addresses are public. Hearth makes
// outbound connections to addresses others choose (a federation request's
// origin, a link in a message for its preview, a push gateway a client
// registers); each may only reach a public address, so nobody can make
// Hearth connect to this computer's or its LAN's services (SSRF). The one
// rule lives here for federation/resolve, internal/media and push.
package netscope

import "net/netip"

var (
	sharedV4    = netip.MustParsePrefix("100.64.0.0/10") // carrier-grade NAT (RFC 6598)
	thisNetV4   = netip.MustParsePrefix("0.0.0.0/8")     // "this network" (RFC 1122)
	broadcastV4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})
)

// Public reports whether a is a globally routable unicast address: not
// loopback, private (RFC 1918, fc00::/7), shared (100.64/10), link-local
// (169.254/16, fe80::/10), multicast, unspecified, 0/8 or broadcast. An
// IPv4-mapped IPv6 address is judged as its IPv4 address.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() &&
		!a.IsLinkLocalUnicast() && !a.IsMulticast() && !a.IsUnspecified() &&
		!sharedV4.Contains(a) && !thisNetV4.Contains(a) && a != broadcastV4
}
