package controlclient

import (
	"html"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/localapi/controlclient/browserspy"
)

// TestOpenInBrowserKeepsSecretOffCommandLine: the browser is handed a
// 0600 page in a 0700 directory that redirects to the link; neither the
// link nor its secret is in the child's argv or environment.
func TestOpenInBrowserKeepsSecretOffCommandLine(t *testing.T) {
	record := browserspy.Install(t)
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
	browserspy.Install(t)
	for _, link := range []string{"javascript:alert(1)", "file:///etc/passwd", "http://"} {
		if err := OpenInBrowser(link); err == nil {
			t.Errorf("opened %q", link)
		}
	}
}
