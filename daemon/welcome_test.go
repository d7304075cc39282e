package daemon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
)

// firstRunDaemon starts a daemon on a new data dir and returns it with
// its control client and the generated password its banner showed.
func firstRunDaemon(t *testing.T) (*Daemon, *controlclient.Client, string) {
	t.Helper()
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.File = filepath.Join(cfg.DataDir, "hearth.conf")
	cfg.ClientListen = "127.0.0.1:0"
	cfg.KeyStore = KeyStoreFile
	cfg.Federation = FederationOff
	var banner strings.Builder
	d, err := Start(cfg, &banner, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Stop(ctx)
	})
	cfg.ClientListen = d.Addr()
	ep, err := Control(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b := banner.String()
	pw := strings.Fields(b[strings.Index(b, "password"):])[1]
	return d, controlclient.New(ep.Addr, ep.Socket, ep.Secret), pw
}

// consoleSession signs a console in as the page does: a one-time link from
// the owner's control client, its code traded for a session token.
func consoleSession(t *testing.T, d *Daemon, c *controlclient.Client) string {
	t.Helper()
	link, err := c.ConsoleLink(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	code, _ := strings.CutPrefix(link, "/_hearth/#code=")
	resp, err := http.Post("http://"+d.Addr()+"/_hearth/v1/session", "application/json", strings.NewReader(`{"code":"`+code+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sess struct{ Session string }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&sess) != nil {
		t.Fatalf("redeem: %d", resp.StatusCode)
	}
	return sess.Session
}

// asConsole makes one request with a console session; it returns the
// status and the decoded body.
func asConsole(t *testing.T, d *Daemon, session, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+d.Addr()+path, strings.NewReader(body))
	req.Header.Set(control.SessionHeader, session)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// matrixLogin logs the owner in with a password through /login and
// returns the HTTP status.
func matrixLogin(t *testing.T, d *Daemon, user, password string) int {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": user}, "password": password})
	resp, err := http.Post("http://"+d.Addr()+"/_matrix/client/v3/login", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestConsoleSetsFirstPassword: a console session may set the owner's
// password exactly once, while it is the generated one nobody used: weak
// passwords are 400 weak_password and change nothing, the new one is
// stored as bcrypt and logs in through /login, the generated one no
// longer does, and a second try is 403; a logged-out session gets 401.
func TestConsoleSetsFirstPassword(t *testing.T) {
	d, c, generated := firstRunDaemon(t)
	owner := ownerName()
	ownerID := d.accounts.UserID(owner)
	session := consoleSession(t, d, c)

	code, wel := asConsole(t, d, session, "GET", "/_hearth/v1/welcome", "")
	if code != 200 || wel["user_id"] != ownerID || wel["homeserver"] != "http://"+d.Addr() || wel["can_set_password"] != true {
		t.Fatalf("welcome: %d %v", code, wel)
	}
	for _, weak := range []string{`""`, `"short"`, `"` + strings.Repeat("é", 37) + `"`} {
		code, out := asConsole(t, d, session, "POST", "/_hearth/v1/welcome/password", `{"password":`+weak+`}`)
		if code != 400 || out["code"] != "weak_password" || out["field"] != "password" {
			t.Errorf("password %s: %d %v", weak, code, out)
		}
	}
	u, _ := d.accounts.Get(owner)
	if !u.PasswordGenerated {
		t.Fatal("a refused weak password changed the account")
	}

	const chosen = "a long enough password"
	code, out := asConsole(t, d, session, "POST", "/_hearth/v1/welcome/password", `{"password":"`+chosen+`"}`)
	if code != 200 || out["user_id"] != ownerID {
		t.Fatalf("set first password: %d %v", code, out)
	}
	u, _ = d.accounts.Get(owner)
	if !strings.HasPrefix(u.PasswordHash, "$2") || bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(chosen)) != nil {
		t.Fatalf("stored hash %q is not bcrypt of the new password", u.PasswordHash)
	}
	if got := matrixLogin(t, d, owner, chosen); got != 200 {
		t.Fatalf("/login with the new password: %d", got)
	}
	if got := matrixLogin(t, d, owner, generated); got != 403 {
		t.Fatalf("/login with the generated password after the change: %d", got)
	}
	code, out = asConsole(t, d, session, "POST", "/_hearth/v1/welcome/password", `{"password":"yet another password"}`)
	if code != 403 || out["code"] != "forbidden" {
		t.Fatalf("second first password: %d %v", code, out)
	}
	if _, wel = asConsole(t, d, session, "GET", "/_hearth/v1/welcome", ""); wel["can_set_password"] != false {
		t.Fatalf("welcome after the password was set: %v", wel)
	}
	// The session's scope did not grow: other accounts' passwords stay
	// the control secret's.
	if code, _ := asConsole(t, d, session, "POST", "/_hearth/v1/accounts/"+owner+"/password", `{"password":"x"}`); code != 401 {
		t.Fatalf("a session set a password through the owner's endpoint: %d", code)
	}
	if code, _ := asConsole(t, d, session, "POST", "/_hearth/v1/logout", ""); code != 200 {
		t.Fatalf("logout: %d", code)
	}
	if code, _ := asConsole(t, d, session, "POST", "/_hearth/v1/welcome/password", `{"password":"after logging out"}`); code != 401 {
		t.Fatalf("after logout: %d", code)
	}
}

// TestFirstPasswordRefusedOnceUsed: once the generated password logged in
// (someone read the banner) or was changed another way, the console may no
// longer set it, and says so; a logged-out session is refused first.
func TestFirstPasswordRefusedOnceUsed(t *testing.T) {
	d, c, generated := firstRunDaemon(t)
	owner := ownerName()
	session := consoleSession(t, d, c)
	if got := matrixLogin(t, d, owner, generated); got != 200 {
		t.Fatalf("/login with the generated password: %d", got)
	}
	code, out := asConsole(t, d, session, "POST", "/_hearth/v1/welcome/password", `{"password":"a long enough password"}`)
	if code != 403 || out["code"] != "forbidden" {
		t.Fatalf("after the generated password was used: %d %v", code, out)
	}
	if got := matrixLogin(t, d, owner, generated); got != 200 {
		t.Fatalf("the refused call changed the password: %d", got)
	}

	d2, c2, _ := firstRunDaemon(t)
	if _, err := c2.SetPassword(context.Background(), owner, "set with the secret"); err != nil {
		t.Fatal(err)
	}
	session2 := consoleSession(t, d2, c2)
	if code, out := asConsole(t, d2, session2, "POST", "/_hearth/v1/welcome/password", `{"password":"a long enough password"}`); code != 403 {
		t.Fatalf("after the password was changed: %d %v", code, out)
	}
}

// TestWelcomeShownOnce: the status asks the tray to open the welcome while
// the owner's password is the generated one and the tray has not opened
// it; of two calls to welcome/shown only the first says first, which a
// console session may not make.
func TestWelcomeShownOnce(t *testing.T) {
	d, c, _ := firstRunDaemon(t)
	ctx := context.Background()
	if st, err := c.Status(ctx); err != nil || !st.WelcomePending {
		t.Fatalf("status on a new data dir: %+v %v", st, err)
	}
	if code, _ := asConsole(t, d, consoleSession(t, d, c), "POST", "/_hearth/v1/welcome/shown", ""); code != 401 {
		t.Fatalf("a console session marked the welcome shown: %d", code)
	}
	if first, err := c.WelcomeShown(ctx); err != nil || !first {
		t.Fatalf("first welcome/shown: %v %v", first, err)
	}
	if first, err := c.WelcomeShown(ctx); err != nil || first {
		t.Fatalf("second welcome/shown: %v %v", first, err)
	}
	if st, _ := c.Status(ctx); st.WelcomePending {
		t.Fatal("the welcome is still pending once shown")
	}

	// A new data dir whose generated password is used has nothing to welcome.
	d2, c2, generated := firstRunDaemon(t)
	matrixLogin(t, d2, ownerName(), generated)
	if st, _ := c2.Status(ctx); st.WelcomePending {
		t.Fatal("welcome pending after the generated password was used")
	}
}
