package daemon

import (
	"context"
	"testing"

	"github.com/hearth-chat/hearth/discovery"
)

// TestLANFirstAheadOfFederationServers: a peer confirmed on the LAN is
// reached over the LAN even when federation_servers names it (LAN-first:
// the LAN keeps working when that route does not, as when the internet
// is gone), and when it leaves the LAN its federation_servers address is
// put back, not dropped.
func TestLANFirstAheadOfFederationServers(t *testing.T) {
	d, _, _, _ := modeDaemon(t, t.TempDir(),
		"federation = lan\nfederation_listen = 127.0.0.1:0\nfederation_servers = hs-b.test=127.0.0.1:1111\n")
	resolved := func() string {
		t.Helper()
		tg, err := d.fed.resolver.Resolve(context.Background(), "hs-b.test")
		if err != nil {
			t.Fatal(err)
		}
		return tg.Addr
	}
	if got := resolved(); got != "127.0.0.1:1111" {
		t.Fatalf("at start hs-b.test resolves to %s", got)
	}
	route := d.routeLANPeer(discovery.New(discovery.Config{ServerName: d.cfg.ServerName}))
	peer := discovery.Peer{ServerName: "hs-b.test", Addrs: []string{"127.0.0.1"}, Port: 2222, Verified: true, Bound: true}
	route(peer, false)
	if got := resolved(); got != "127.0.0.1:2222" {
		t.Fatalf("confirmed on the LAN, hs-b.test resolves to %s, want its LAN address", got)
	}
	route(peer, true)
	if got := resolved(); got != "127.0.0.1:1111" {
		t.Fatalf("gone from the LAN, hs-b.test resolves to %s, want its federation_servers address", got)
	}
}
