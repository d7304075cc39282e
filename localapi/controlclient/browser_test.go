package controlclient

import (
	"html"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// spyBrowser puts a fake xdg-open first on PATH that records its argv and
// environment, and points XDG_RUNTIME_DIR at a fresh directory. It returns
// a function that waits for the spy's record.
func spyBrowser(t *testing.T) func() (argv, env string) {
	t.Helper()
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
	return func() (string, string) {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if argv, err := os.ReadFile(filepath.Join(rec, "argv")); err == nil {
				env, _ := os.ReadFile(filepath.Join(rec, "env"))
				return string(argv), string(env)
			}
		}
		t.Fatal("the browser was never started")
		return "", ""
	}
}

// TestOpenInBrowserKeepsSecretOffCommandLine: the browser is handed a
// 0600 page in a 0700 directory that redirects to the link; neither the
// link nor its secret is in the child's argv or environment.
func TestOpenInBrowserKeepsSecretOffCommandLine(t *testing.T) {
	record := spyBrowser(t)
	const secret = "s3cr3t-one-time-code"
	link := "http://127.0.0.1:8008/_hearth/#code=" + secret + "&x=<b>"
	if err := OpenInBrowser(link); err != nil {
		t.Fatal(err)
	}
	argv, env := record()
	if strings.Contains(argv, secret) || strings.Contains(env, secret) {
		t.Fatalf("secret handed to the browser command:\nargv %s\nenv %s", argv, env)
	}
	u, err := url.Parse(strings.TrimSpace(argv))
	if err != nil || u.Scheme != "file" {
		t.Fatalf("argv %q is not a file URL", argv)
	}
	fi, err := os.Stat(u.Path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("launch page %s: %v %v", u.Path, fi.Mode(), err)
	}
	if di, err := os.Stat(filepath.Dir(u.Path)); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("launch dir: %v %v", di.Mode(), err)
	}
	if !strings.HasPrefix(u.Path, os.Getenv("XDG_RUNTIME_DIR")) {
		t.Fatalf("launch page %s outside the runtime dir", u.Path)
	}
	page, _ := os.ReadFile(u.Path)
	for _, want := range []string{
		`<meta http-equiv="refresh" content="0;url=` + html.EscapeString(link) + `">`,
		`location.replace("http://127.0.0.1:8008/_hearth/#code=` + secret + `\u0026x=\u003cb\u003e")`,
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("launch page lacks %s:\n%s", want, page)
		}
	}
}

// TestOpenInBrowserRefusesOtherSchemes: a configured chat client URL of
// javascript: or file: is not written into a page the browser runs.
func TestOpenInBrowserRefusesOtherSchemes(t *testing.T) {
	spyBrowser(t)
	for _, link := range []string{"javascript:alert(1)", "file:///etc/passwd", "http://"} {
		if err := OpenInBrowser(link); err == nil {
			t.Errorf("opened %q", link)
		}
	}
}
