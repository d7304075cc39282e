package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// noKeyringEnv is the environment of a machine with no OS keyring: the
// D-Bus session address leads nowhere.
func noKeyringEnv(t *testing.T) []string {
	return append(childEnv(), "DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(t.TempDir(), "no-bus"))
}

// TestKeyFileFallback runs the real binary where no keyring answers: in
// auto mode it starts with the key in a 0600 file and says so in its log
// and in 'hearth keys status'; in keyring mode it refuses to start.
func TestKeyFileFallback(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	run := exec.Command(hearthBin, "run", "--data-dir", dir, "--client-listen", freeAddr(t), "--key-store", "auto",
		"--federation", "off")
	run.Env = noKeyringEnv(t)
	var logs bytes.Buffer
	run.Stdout, run.Stderr = &logs, &logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Process.Kill()
	key := filepath.Join(dir, "signing.key")
	for deadline := time.Now().Add(20 * time.Second); !fileExists(key); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no signing.key in the data dir; logs:\n%s", logs.String())
		}
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("signing.key mode: %v %v", fi.Mode(), err)
	}
	run.Process.Signal(os.Interrupt)
	run.Wait()
	if !strings.Contains(logs.String(), "no OS keyring answered") {
		t.Errorf("no warning about the file fallback in the log:\n%s", logs.String())
	}

	status := exec.Command(hearthBin, "keys", "status", "--data-dir", dir)
	status.Env = noKeyringEnv(t)
	out, err := status.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "0600 file") || !strings.Contains(string(out), "warning") {
		t.Fatalf("keys status: %v\n%s", err, out)
	}

	strict := exec.Command(hearthBin, "run", "--data-dir", t.TempDir(), "--client-listen", freeAddr(t), "--key-store", "keyring",
		"--federation", "off")
	strict.Env = noKeyringEnv(t)
	out, err = strict.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no OS keyring answers") {
		t.Fatalf("key_store = keyring without a keyring: err %v\n%s", err, out)
	}
}
