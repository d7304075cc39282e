package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/hearth-chat/hearth/internal/netscope"
)

// ErrAddressRefused is the error of a dial the address policy refused.
var ErrAddressRefused = errors.New("resolve: address not allowed for federation")

// Outbound address policy (issue 10). A server name comes from whoever
// sent a request (the X-Matrix origin), so without a policy any peer could
// make this server connect to this computer's or its LAN's services (SSRF).
// Only globally routable unicast addresses are dialled, plus the networks
// the owner allowed (federation_allow_networks); static routes (the
// owner's federation_servers and LAN peers discovery verified) are exempt,
// since someone this computer trusts chose them. What counts as public
// is internal/netscope's one rule, shared with URL previews and pushers.

// addrPolicy admits public addresses and those in its extra networks.
type addrPolicy []netip.Prefix

func (p addrPolicy) allows(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if netscope.Public(a) {
		return true
	}
	for _, n := range p {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// control checks the address actually dialled, after DNS, so a name that
// resolves (or re-resolves, DNS rebinding) to a refused address is caught.
func (p addrPolicy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !p.allows(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrAddressRefused, address)
	}
	return nil
}

// ParseNetworks reads a comma-separated list of CIDR prefixes (a bare
// address counts as its own /32 or /128), the format of
// federation_allow_networks.
func ParseNetworks(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a network (CIDR such as 10.0.0.0/8) or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// dialPolicy is the policy of the default dialer (tests).
func (r *Resolver) dialPolicy() addrPolicy { return r.policy }

// newDialers returns the policy-checked dialer and the unchecked one for
// static routes.
func newDialers(allow []netip.Prefix) (checked, static func(ctx context.Context, network, addr string) (net.Conn, error)) {
	policy := addrPolicy(allow)
	c := &net.Dialer{KeepAlive: 30 * time.Second, Control: policy.control}
	s := &net.Dialer{KeepAlive: 30 * time.Second}
	return c.DialContext, s.DialContext
}
