package discovery

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-chat/hearth/internal/netns/netnstest"
)

// The tests that send real multicast run inside a private network
// namespace (the test binary re-executes itself under `unshare --net`),
// on one end of a veth pair of their own: nothing leaks to this machine's LAN
// or to other tests, and nothing from them reaches ours. Two services in
// one process hear each other through multicast loopback, exactly as two
// daemons on one machine do.

const (
	testIface = "hd0"
)

var setupOnce sync.Once

// inPrivateLAN returns true when the calling test runs inside its private
// namespace (netnstest.Private), where the interface testIface with
// 10.77.0.1/24 and 10.77.0.2/24 is up; otherwise it has run the test there
// and returns false: the caller returns.
func inPrivateLAN(t *testing.T) bool {
	t.Helper()
	if !netnstest.Private(t) {
		return false
	}
	var err error
	setupOnce.Do(func() { err = setupLAN() })
	if err != nil {
		t.Fatalf("set up the private LAN: %v", err)
	}
	return true
}

func setupLAN() error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", testIface, "type", "veth", "peer", "name", testIface + "p"},
		{"link", "set", testIface + "p", "up"},
		{"addr", "add", "10.77.0.1/24", "dev", testIface},
		{"addr", "add", "10.77.0.2/24", "dev", testIface},
		{"link", "set", testIface, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
