package netmon

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const netnsEnv = "HEARTH_NETMON_NETNS"

// inPrivateNet re-runs the calling test in a network namespace of its own
// (root and unshare(1)), so it can add links and addresses without
// touching this machine's. It returns true inside, false outside (where
// the test's outcome is the inner run's).
func inPrivateNet(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == "1" {
		return true
	}
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare(1) to make a private network namespace")
	}
	if err := exec.Command("unshare", "--net", "true").Run(); err != nil {
		t.Skipf("cannot make a network namespace here: %v", err)
	}
	cmd := exec.Command("unshare", "--net", os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("in the private namespace: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	return false
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestNetlinkTellsEverySubscriber: with the real netlink watcher, a new
// link, a new address and a link going down each reach both subscribers
// of one monitor (one socket between them), as "network changed" and
// not as a sleep; the last unsubscribe closes the watcher.
func TestNetlinkTellsEverySubscriber(t *testing.T) {
	if !inPrivateNet(t) {
		return
	}
	m := New()
	a, endA := m.Subscribe()
	b, endB := m.Subscribe()
	steps := [][]string{
		{"link", "add", "hearth0", "type", "veth", "peer", "name", "hearth0p"},
		{"link", "set", "hearth0p", "up"},
		{"link", "set", "hearth0", "up"},
		{"addr", "add", "10.78.0.1/24", "dev", "hearth0"},
		{"link", "set", "hearth0", "down"},
	}
	for _, step := range steps {
		ip(t, step...)
		for _, ch := range []<-chan Change{a, b} {
			if c := receive(t, ch); c != (Change{Network: true}) {
				t.Fatalf("after ip %s: %+v", strings.Join(step, " "), c)
			}
		}
	}
	endA()
	m.mu.Lock()
	running := m.stop != nil
	m.mu.Unlock()
	if !running {
		t.Fatal("the watcher stopped while a subscriber was left")
	}
	endB()
	endB() // twice is harmless
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stop != nil || len(m.subs) != 0 {
		t.Fatalf("after the last unsubscribe: %d subscribers, watcher running %v", len(m.subs), m.stop != nil)
	}
}
