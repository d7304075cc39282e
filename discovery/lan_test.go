package discovery

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// The tests that send real multicast run inside a private network
// namespace (the test binary re-executes itself under `unshare --net`),
// on one end of a veth pair of their own: nothing leaks to this machine's LAN
// or to other tests, and nothing from them reaches ours. Two services in
// one process hear each other through multicast loopback, exactly as two
// daemons on one machine do.

const (
	netnsEnv  = "HEARTH_DISCOVERY_NETNS"
	testIface = "hd0"
)

var setupOnce sync.Once

// inPrivateLAN returns true when the calling test runs inside the private
// namespace (then the interface testIface with 10.77.0.1/24 and
// 10.77.0.2/24 is up); otherwise it runs the test there, reports its
// output, and returns false: the caller returns.
func inPrivateLAN(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == "1" {
		var err error
		setupOnce.Do(func() { err = setupLAN() })
		if err != nil {
			t.Fatalf("set up the private LAN: %v", err)
		}
		return true
	}
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare(1) to make a private network namespace for multicast tests")
	}
	if err := exec.Command("unshare", "--net", "true").Run(); err != nil {
		t.Skipf("cannot make a network namespace here (%v): the multicast tests need one", err)
	}
	cmd := exec.Command("unshare", "--net", os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("in the private namespace: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	return false
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
