package tray

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestOpenURLKeepsSecretOffCommandLine: the tray's Open Hearth and Open
// chat hand the browser a private launch page, not the link with its
// one-time secret (readable by every user in the process table).
func TestOpenURLKeepsSecretOffCommandLine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the spy is an xdg-open script")
	}
	bin, rec := t.TempDir(), t.TempDir()
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + rec + "/argv.tmp\nenv > " + rec + "/env\nmv " + rec + "/argv.tmp " + rec + "/argv\n"
	if err := os.WriteFile(filepath.Join(bin, "xdg-open"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())

	const token = "hlt_owner-login-token"
	link := "http://chat.invalid/#/login?loginToken=" + token
	if err := (SystemDesktop{}).OpenURL(link); err != nil {
		t.Fatal(err)
	}
	var argv, env []byte
	for deadline := time.Now().Add(10 * time.Second); argv == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		argv, _ = os.ReadFile(filepath.Join(rec, "argv"))
	}
	env, _ = os.ReadFile(filepath.Join(rec, "env"))
	if argv == nil {
		t.Fatal("the browser was never started")
	}
	if strings.Contains(string(argv), token) || strings.Contains(string(env), token) {
		t.Fatalf("login token handed to the browser command: argv %s", argv)
	}
	page := strings.TrimPrefix(strings.TrimSpace(string(argv)), "file://")
	fi, err := os.Stat(page)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("launch page %s: %v %v", page, fi, err)
	}
	if b, _ := os.ReadFile(page); !strings.Contains(string(b), token) {
		t.Fatalf("launch page does not lead to the link:\n%s", b)
	}
}
