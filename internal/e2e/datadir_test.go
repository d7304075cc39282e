package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// exitDataDir is hearth's exit code for a data dir it cannot use as it is
// (cmd/hearth/check.go).
const exitDataDir = 5

// runArgs are the flags of a test daemon's 'hearth run' on dataDir, with
// a fresh port and the server name given (none when name is empty).
func runArgs(t *testing.T, dataDir, name string) []string {
	args := []string{"run", "--data-dir", dataDir, "--client-listen", freeAddr(t), "--key-store", "file",
		"--lan-discovery", "off", "--federation", "off"}
	if name != "" {
		args = append(args, "--server-name", name)
	}
	return args
}

// wantDataDirRefusal checks that a 'hearth run' exited with the data dir
// code and one line on stderr that holds every one of want, and no Go
// panic or goroutine dump.
func wantDataDirRefusal(t *testing.T, code int, stderr string, want ...string) {
	t.Helper()
	if code != exitDataDir {
		t.Errorf("exit code %d, want %d (data dir problem)\nstderr: %s", code, exitDataDir, stderr)
	}
	var ours []string
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if strings.HasPrefix(line, "hearth: ") {
			ours = append(ours, line)
		}
	}
	if len(ours) != 1 {
		t.Errorf("want exactly one 'hearth: ' line on stderr, got %d:\n%s", len(ours), stderr)
		return
	}
	for _, w := range want {
		if !strings.Contains(ours[0], w) {
			t.Errorf("message %q does not mention %q", ours[0], w)
		}
	}
	for _, dump := range []string{"goroutine ", "panic", "SIGBUS", "fault"} {
		if strings.Contains(stderr, dump) {
			t.Errorf("stderr has %q, a crash rather than a refusal:\n%s", dump, stderr)
		}
	}
}

// TestServerNameRecordedInDataDir: the server name is recorded at the
// first start; a later start under another name refuses with a one-line
// message naming both and the way out, and a start with no name
// configured (a renamed machine's default) uses the recorded one.
func TestServerNameRecordedInDataDir(t *testing.T) {
	t.Parallel()
	d := NewDaemon(t, t.TempDir())
	d.Name = "first.e2e"
	d.Start()
	d.Register("alice")
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}

	code, _, stderr := runHearth(t, runArgs(t, d.DataDir, "second.e2e")...)
	wantDataDirRefusal(t, code, stderr, `"first.e2e"`, `"second.e2e"`, "server_name = first.e2e", "new data dir")

	// The same refusal for an offline command, which must not write
	// second.e2e's user IDs into first.e2e's file.
	code, _, stderr = runHearth(t, "account", "add", "bob", "--data-dir", d.DataDir, "--server-name", "second.e2e")
	wantDataDirRefusal(t, code, stderr, `"first.e2e"`)

	// No name configured: the machine's name would be the default, but the
	// data dir's own name wins.
	cmd := exec.Command(hearthBin, runArgs(t, d.DataDir, "")...)
	cmd.Env = childEnv()
	var out logBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(startDeadline)
	for !strings.Contains(out.String(), "hearth is ready") {
		select {
		case err := <-done:
			t.Fatalf("hearth run without a server name exited (%v):\n%s", err, out.String())
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("not ready within %v:\n%s", startDeadline, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Errorf("hearth run without a server name did not stop cleanly: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "server_name=first.e2e") {
		t.Errorf("started without a configured name, want the recorded first.e2e:\n%s", out.String())
	}
}

// highWater is the byte offset past the last page a bbolt file uses (its
// file is longer: bbolt preallocates).
func highWater(t *testing.T, path string) (int64, int) {
	t.Helper()
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var size int64
	b.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size, b.Info().PageSize
}

// TestDamagedDataFile: a hearth.db cut to half its pages, one with garbage
// in its meta pages and an empty one each make 'hearth run' exit with the
// data dir code and one line naming the file and 'hearth check' — not a
// SIGBUS with a goroutine dump, and not a fresh empty server.
func TestDamagedDataFile(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	d.Register("alice")
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(d.DataDir, "hearth.db")
	sound, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	used, pageSize := highWater(t, path)
	cases := map[string][]byte{
		"truncated to half": sound[:used/2],
		"garbage meta pages": append(bytes.Repeat([]byte("garbage!"), 2*pageSize/8),
			sound[2*pageSize:]...),
		"empty": {},
	}
	for name, damaged := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runHearth(t, runArgs(t, d.DataDir, serverName)...)
			wantDataDirRefusal(t, code, stderr, path, "hearth check", "backup")
		})
	}
}

// TestCheckCommand: 'hearth check' says OK (exit 0) for a sound file,
// refuses while the daemon holds the file, and lists what bbolt's check
// finds in a file with a damaged page in the middle (exit 5).
func TestCheckCommand(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice := d.Register("alice")
	PublicRoom(t, alice)

	code, _, stderr := runHearth(t, "check", "--data-dir", d.DataDir)
	if code != 3 || !strings.Contains(stderr, "running") {
		t.Errorf("check while running: exit %d, stderr %q; want 3 and 'running'", code, stderr)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runHearth(t, "check", "--data-dir", d.DataDir)
	if code != 0 || !strings.Contains(stdout, "OK") {
		t.Fatalf("check of a sound file: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	// Overwrite the header of a leaf page in use: Open reads only the meta
	// pages, so only the page check finds it.
	path := filepath.Join(d.DataDir, "hearth.db")
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := -1
	pageSize := b.Info().PageSize
	b.View(func(tx *bolt.Tx) error {
		for id := 2; int64(id)*int64(pageSize) < tx.Size(); id++ {
			if info, err := tx.Page(id); err == nil && info != nil && info.Type == "leaf" {
				leaf = id
			}
		}
		return nil
	})
	b.Close()
	if leaf < 0 {
		t.Fatal("no leaf page in use")
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte{0x55, 0x55}, int64(leaf)*int64(pageSize)+8) // the page's flags
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runHearth(t, "check", "--data-dir", d.DataDir)
	if code != exitDataDir || strings.Contains(stdout, "OK") || !strings.Contains(stdout, "problem") {
		t.Fatalf("check of a damaged file: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}
