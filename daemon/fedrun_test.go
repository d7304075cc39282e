package daemon

import (
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/federation/queue"
	"github.com/hearth-chat/hearth/internal/netns/netnstest"
)

// TestNetworkChangeEndsBackoff: when this machine's network changes (here
// a new link and address, heard through the network monitor's netlink
// socket), federation ends every destination's back-off at once, so what
// waits goes out on the new network. Before, a 30 s tick compared the
// interface addresses, so the back-off lasted until the next tick; now
// nothing ticks and the change is heard when it happens. (The monitor's
// own tests, internal/netmon, check the two signs: changed addresses and
// time asleep.)
func TestNetworkChangeEndsBackoff(t *testing.T) {
	if !netnstest.Private(t) {
		return
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.ClientListen = "127.0.0.1:0"
	cfg.KeyStore = KeyStoreFile
	cfg.LANDiscovery = "off"
	cfg.Federation = FederationLAN
	cfg.FederationListen = "127.0.0.1:0"
	cfg.FederationServers = "far.test=127.0.0.1:9" // nothing listens: every send fails at once
	d, err := Start(cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(t, d)

	far := func() queue.Destination {
		st := d.fed.queue.Status()
		if i := slices.IndexFunc(st, func(x queue.Destination) bool { return x.Name == "far.test" }); i >= 0 {
			return st[i]
		}
		return queue.Destination{}
	}
	waitFor := func(what string, ok func(queue.Destination) bool) {
		t.Helper()
		for start := time.Now(); !ok(far()); time.Sleep(20 * time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("far.test never %s: %+v", what, far())
			}
		}
	}
	d.fed.queue.Nudge([]string{"far.test"})
	waitFor("backed off", func(x queue.Destination) bool { return x.Failures > 0 && !x.NextTry.IsZero() })

	for _, args := range [][]string{
		{"link", "add", "hearth0", "type", "veth", "peer", "name", "hearth0p"},
		{"addr", "add", "10.79.0.1/24", "dev", "hearth0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	waitFor("left its back-off after the network changed", func(x queue.Destination) bool { return x.Failures == 0 && x.NextTry.IsZero() })
}
