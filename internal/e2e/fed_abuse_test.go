package e2e

import (
	"crypto/ed25519"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestForgedOriginMakesNoLoopbackConnection: a request whose X-Matrix
// origin names a loopback address (a service of this computer) is refused
// without the daemon connecting there to fetch the origin's keys: the
// outbound address policy refuses loopback unless configured
// (federation/resolve/policy.go).
func TestForgedOriginMakesNoLoopbackConnection(t *testing.T) {
	t.Parallel()
	fn := newFedNet(t, "hs1.test")
	peer := fn.addPeer(peerName, "hs1.test")
	hs1 := fn.Daemons["hs1.test"]
	hs1.Extra = withoutFlag(hs1.Extra, "--federation-allow-networks") // the default policy
	hs1.Start()

	// A local service the attacker wants the daemon to talk to.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	noErr(t, err, "listen")
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()

	origin := spec.ServerName(ln.Addr().String())
	_, key, err := ed25519.GenerateKey(nil)
	noErr(t, err, "key")
	fr := fclient.NewFederationRequest(http.MethodGet, origin, "hs1.test",
		"/_matrix/federation/v1/query/profile?user_id=@alice:hs1.test")
	noErr(t, fr.Sign(origin, gomatrixserverlib.KeyID("ed25519:x"), key), "sign")
	req, err := fr.HTTPRequest()
	noErr(t, err, "request")
	resp, err := peer.http.Do(req.WithContext(t.Context()))
	noErr(t, err, "send the forged request")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged origin %s: %d %s, want 401", origin, resp.StatusCode, body)
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("the daemon connected %d times to %s, a loopback address named by a forged origin", n, origin)
	}
}

// withoutFlag drops flag and its value from args.
func withoutFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == flag {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}
