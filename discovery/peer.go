package discovery

import (
	"crypto/ed25519"
	"net"
	"strconv"
	"strings"
	"time"
)

// What the rest of Hearth sees of a peer, and which names the LAN may
// route.

// Peer is another Hearth daemon seen on the local network.
type Peer struct {
	ServerName string
	Addrs      []string // IP addresses of the answer on the receiving interface's subnets, IPv4 first
	Port       int      // its federation listener's port
	KeyID, Key string   // the announced signing key: ed25519:<id>, unpadded base64
	FirstSeen  time.Time
	LastSeen   time.Time
	Expires    time.Time // when its records run out unless refreshed
	// LAN: the server name is a LAN-only name (".local" or no dot), the
	// only kind an announcement may route: a public name is resolved by
	// DNS and its key by the internet, never by whoever shouts on the LAN.
	LAN bool
	// Bound: the announcement binds a TLS certificate key to the
	// announced signing key (binding.go); TLSKey is that key's SPKI
	// SHA-256, the only certificate key federation accepts from the peer.
	Bound  bool
	TLSKey [32]byte
	// Verified: a LAN name whose announced key is the one pinned for it,
	// or a public name whose announced key is the one the internet gave
	// for it (Config.InternetKeys), and whose certificate binding that
	// key signed.
	Verified bool
	// KeyMismatch: a public name announced with another key than the one
	// the internet gave for it. Listed, never routed; there is nothing
	// for the owner to accept (the internet's key is the truth).
	KeyMismatch bool
	// KeyChanged: the announced key is not the one pinned the first time
	// this server name was seen. Such a peer is listed, never routed to.
	KeyChanged bool
	// KeyRefused: the owner chose to keep refusing this particular new
	// key (Refuse); it is still refused, just no longer news.
	KeyRefused bool
	// TXT holds the announcement's other TXT keys (newer fields).
	TXT map[string]string
}

// Routable reports whether federation may be routed to the peer over the
// LAN: a LAN name with its pinned key, or a public name with the key the
// internet gave for it (LAN-first routing), and a usable address.
func (p Peer) Routable() bool {
	return p.Verified && !p.KeyChanged && !p.KeyMismatch && p.Route(nil) != ""
}

// Unconfirmed reports whether p is a public name whose key cannot be
// checked yet: no key of that ID is known from the internet or a notary.
// Such a peer is listed and not routed until a later announcement can be
// checked.
func (p Peer) Unconfirmed() bool { return !p.LAN && !p.Verified && !p.KeyMismatch }

// InternetKeys answers what this server learned about other servers' keys
// over the internet (federation/serverkeys: keys fetched from the server
// itself through DNS resolution or through a notary). A LAN announcement
// of a public name is believed only when its key is one of these (issue
// 11): anyone on the Wi-Fi can announce "matrix.org".
type InternetKeys interface {
	// InternetKey is the current key keyID of serverName, if known.
	InternetKey(serverName, keyID string) (ed25519.PublicKey, bool)
}

// Route is the "ip:port" federation should dial for p: the first address
// in one of the given local networks (the addresses were checked against
// the receiving interface's subnets on arrival, but a network may have
// gone since), else the first one. Empty when there is none.
func (p Peer) Route(local []*net.IPNet) string {
	if p.Port <= 0 || len(p.Addrs) == 0 {
		return ""
	}
	for _, a := range p.Addrs {
		ip := net.ParseIP(a)
		for _, n := range local {
			if ip != nil && n.Contains(ip) {
				return net.JoinHostPort(a, strconv.Itoa(p.Port))
			}
		}
	}
	return net.JoinHostPort(p.Addrs[0], strconv.Itoa(p.Port))
}

// isLANName reports whether a server name can only be a LAN name: it
// ends in ".local" (RFC 6762 §3: names there resolve only over mDNS) or
// has no dot at all (no public DNS name has none), port aside.
func isLANName(name string) bool {
	host := name
	if h, _, err := net.SplitHostPort(name); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || strings.HasPrefix(host, "[") || net.ParseIP(host) != nil {
		return false
	}
	return strings.HasSuffix(host, ".local") || !strings.Contains(host, ".")
}
