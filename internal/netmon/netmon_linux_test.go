package netmon

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/internal/netns/netnstest"
)

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
	if !netnstest.Private(t) {
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
