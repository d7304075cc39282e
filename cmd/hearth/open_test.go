package main

import (
	"bytes"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/localapi/controlclient/browserspy"
)

// TestOpenKeepsSecretsOffCommandLine runs 'hearth open console' and
// 'hearth open chat' against a real daemon with a spy for xdg-open: the
// console's one-time code and the owner's login token reach the browser
// only through a 0600 launch page, never its argv or environment.
func TestOpenKeepsSecretsOffCommandLine(t *testing.T) {
	record := browserspy.Install(t)
	cfg := testConfig(t)
	cfg.ChatClientURL = "http://chat.invalid/#/login?hs={homeserver}&loginToken={login_token}"
	d, stop := startDaemon(t, cfg)
	t.Cleanup(stop)
	flags := []string{"--data-dir", cfg.DataDir, "--client-listen", d.Addr(), "--key-store", "file"}
	for what, secretRE := range map[string]*regexp.Regexp{
		"console": regexp.MustCompile(`#code=([A-Za-z0-9_-]+)`),
		"chat":    regexp.MustCompile(`loginToken=([A-Za-z0-9_%-]+)`),
	} {
		t.Run(what, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := openCmd(append([]string{what}, flags...), &stdout, &stderr); code != 0 {
				t.Fatalf("hearth open %s: %d %s", what, code, stderr.String())
			}
			argv, env := record()
			u, err := url.Parse(strings.TrimSpace(argv))
			if err != nil || u.Scheme != "file" {
				t.Fatalf("the browser got %q, not a launch page", argv)
			}
			fi, err := os.Stat(u.Path)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("launch page: %v %v", fi, err)
			}
			page, _ := os.ReadFile(u.Path)
			m := secretRE.FindStringSubmatch(string(page))
			if m == nil {
				t.Fatalf("launch page does not lead to the %s:\n%s", what, page)
			}
			secret, _ := url.QueryUnescape(m[1])
			for where, s := range map[string]string{"argv": argv, "env": env, "stdout": stdout.String(), "stderr": stderr.String()} {
				if strings.Contains(s, m[1]) || strings.Contains(s, secret) {
					t.Errorf("the %s secret is in the browser's %s: %s", what, where, s)
				}
			}
		})
	}
}
