package tray

import (
	"os"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/localapi/controlclient/browserspy"
)

// TestOpenURLKeepsSecretOffCommandLine: the tray's Open Hearth and Open
// chat hand the browser a private launch page, not the link with its
// one-time secret (readable by every user in the process table).
func TestOpenURLKeepsSecretOffCommandLine(t *testing.T) {
	record := browserspy.Install(t)
	const token = "hlt_owner-login-token"
	link := "http://chat.invalid/#/login?loginToken=" + token
	if err := (SystemDesktop{}).OpenURL(link); err != nil {
		t.Fatal(err)
	}
	argv, env := record()
	if strings.Contains(argv, token) || strings.Contains(env, token) {
		t.Fatalf("login token handed to the browser command: argv %s", argv)
	}
	page := strings.TrimPrefix(strings.TrimSpace(argv), "file://")
	fi, err := os.Stat(page)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("launch page %s: %v %v", page, fi, err)
	}
	if b, _ := os.ReadFile(page); !strings.Contains(string(b), token) {
		t.Fatalf("launch page does not lead to the link:\n%s", b)
	}
}
