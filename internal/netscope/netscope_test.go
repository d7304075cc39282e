package netscope

import (
	"net/netip"
	"testing"
)

func TestPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "192.168.0.1": false, "172.16.5.5": false,
		"169.254.169.254": false, "fe80::1": false, "224.0.0.1": false, "ff02::1": false,
		"0.0.0.0": false, "0.1.2.3": false, "::": false, "100.64.0.1": false, "fd00::1": false,
		"::ffff:127.0.0.1": false, "255.255.255.255": false,
		"93.184.216.34": true, "2606:2800:220:1::1": true, "::ffff:93.184.216.34": true,
	} {
		if got := Public(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Public(%s) = %v, want %v", addr, got, want)
		}
	}
}
