package e2e

import (
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestOpenChatLoggedIn: with chat_client_url set, `hearth open chat`
// fills in the homeserver, the owner's ID and a single-use login token
// that logs in as the owner exactly once; without it, it says what to set.
func TestOpenChatLoggedIn(t *testing.T) {
	t.Parallel()
	d := NewDaemon(t, t.TempDir())
	d.Extra = []string{"--chat-client-url", "https://chat.example/#/login?hs={homeserver}&user={user}&loginToken={login_token}"}
	d.Start()
	code, out, errOut := runHearth(t, "open", "chat", "--print", "--data-dir", d.DataDir, "--client-listen", d.Addr)
	if code != 0 {
		t.Fatalf("hearth open chat: exit %d: %s", code, errOut)
	}
	link, err := url.Parse(strings.TrimSpace(out))
	noErr(t, err, "parse %q", out)
	q, err := url.ParseQuery(strings.TrimPrefix(link.Fragment, "/login?"))
	noErr(t, err, "parse the link's query %q", link.Fragment)
	if q.Get("hs") != d.URL() {
		t.Errorf("homeserver in the link = %q, want %q", q.Get("hs"), d.URL())
	}
	c := d.Client("", "")
	login := func() (*mautrix.RespLogin, error) {
		return c.Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypeToken, Token: q.Get("loginToken")})
	}
	resp, err := login()
	noErr(t, err, "log in with the link's token")
	if resp.UserID != id.UserID(q.Get("user")) {
		t.Errorf("the token logged in %s, the link names %s", resp.UserID, q.Get("user"))
	}
	_, err = login()
	wantMatrixErr(t, err, 403, "M_FORBIDDEN", "a second login with the same token")

	plain := StartDaemon(t)
	code, _, errOut = runHearth(t, "open", "chat", "--print", "--data-dir", plain.DataDir, "--client-listen", plain.Addr)
	if code != 1 || !strings.Contains(errOut, "chat_client_url") {
		t.Errorf("open chat with no client configured: exit %d, %q; want exit 1 naming chat_client_url", code, errOut)
	}
}
