package e2e

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestOwnerDeactivation: the owner (the account made at first start) may
// deactivate their Matrix account like anyone; the CLI keeps working,
// since it speaks to the control API, "open chat" says the account is
// deactivated instead of failing obscurely, and a new account can be
// added from the command line.
func TestOwnerDeactivation(t *testing.T) {
	t.Parallel()
	d := NewDaemon(t, t.TempDir())
	d.Extra = []string{"--chat-client-url", "https://chat.example/#/login?hs={homeserver}&user={user}&loginToken={login_token}"}
	d.Start()
	code, out, errOut := runHearth(t, "account", "list", "--data-dir", d.DataDir, "--client-listen", d.Addr)
	if code != 0 || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("account list: exit %d, %q %q; want the owner alone", code, out, errOut)
	}
	owner := id.UserID(strings.TrimSpace(out))
	const pw = "owner's new password"
	if code, _, errOut := runHearth(t, "account", "passwd", owner.Localpart(), "--password", pw,
		"--data-dir", d.DataDir, "--client-listen", d.Addr); code != 0 {
		t.Fatalf("account passwd: exit %d: %s", code, errOut)
	}
	c := d.Client("", "")
	_, err := c.Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword, StoreCredentials: true,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: owner.String()}, Password: pw})
	noErr(t, err, "the owner logs in")
	code, body := Raw(t, c, "POST", "/_matrix/client/v3/account/deactivate", map[string]any{
		"auth": map[string]any{"type": "m.login.password", "user": owner.String(), "password": pw}})
	if code != 200 {
		t.Fatalf("owner deactivates: %d %s", code, body)
	}

	if code, _, errOut := runHearth(t, "status", "--data-dir", d.DataDir, "--client-listen", d.Addr); code != 0 {
		t.Errorf("status after the owner deactivated: exit %d: %s", code, errOut)
	}
	code, _, errOut = runHearth(t, "open", "chat", "--print", "--data-dir", d.DataDir, "--client-listen", d.Addr)
	if code != 1 || !strings.Contains(errOut, "deactivated") || strings.Contains(errOut, "M_") {
		t.Errorf("open chat for a deactivated owner: exit %d, %q; want 1 and a plain reason", code, errOut)
	}
	if strings.Contains(d.Logs(), "control API") {
		t.Errorf("the daemon logged the refusal as an internal error:\n%s", d.Logs())
	}
	if code, _, errOut := runHearth(t, "account", "add", "newme", "--password", Password("newme"),
		"--data-dir", d.DataDir, "--client-listen", d.Addr); code != 0 {
		t.Fatalf("account add after the owner deactivated: exit %d: %s", code, errOut)
	}
	if _, err := d.Login("newme").Whoami(ctx(t)); err != nil {
		t.Errorf("the new account cannot log in: %v", err)
	}
}
