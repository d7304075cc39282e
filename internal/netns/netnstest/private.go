// Package netnstest runs a test in a network namespace of its own, for
// tests that add links and addresses (Linux, root): the machine's own
// network is never touched, and the test sees only what it made.
package netnstest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// privateEnv marks the inner run of a test re-run by Private.
const privateEnv = "HEARTH_PRIVATE_NETNS"

// Private re-runs the calling test in a new network namespace
// (unshare --net) and reports its output: it returns true inside, where the
// test goes on, and false outside, where the caller returns (the test's
// outcome is the inner run's). It skips where no namespace can be made
// (not root, no unshare).
func Private(t *testing.T) bool {
	t.Helper()
	if os.Getenv(privateEnv) == "1" {
		return true
	}
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare(1) to make a private network namespace")
	}
	if err := exec.Command("unshare", "--net", "true").Run(); err != nil {
		t.Skipf("cannot make a network namespace here: %v", err)
	}
	cmd := exec.Command("unshare", "--net", os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), privateEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("in the private namespace: %v\n%s", err, out.String())
	}
	t.Log(out.String())
	return false
}
