package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
)

// startTestDaemon runs a real daemon in this process on a free port.
func startTestDaemon(t *testing.T) (*Daemon, Config) {
	t.Helper()
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.File = filepath.Join(cfg.DataDir, "hearth.conf")
	cfg.ClientListen = "127.0.0.1:0"
	cfg.KeyStore = KeyStoreFile
	cfg.Federation = FederationOff // no listener on this machine's networks from a test
	cfg.LANInterfaces = "lo"       // discovery (on by default) sends nothing to them either
	d, err := Start(cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Stop(ctx)
	})
	cfg.ClientListen = d.Addr()
	return d, cfg
}

func TestControlAPI(t *testing.T) {
	_, cfg := startTestDaemon(t)
	ep, err := Control(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, c := range map[string]*controlclient.Client{
		"socket": controlclient.New(ep.Addr, ep.Socket, ep.Secret),
		"tcp":    controlclient.New(ep.Addr, "", ep.Secret),
	} {
		t.Run(name, func(t *testing.T) {
			st, err := c.Status(ctx)
			if err != nil || st.ServerName != cfg.ServerName || st.Accounts != 1 || st.StorageBytes == 0 {
				t.Fatalf("status %+v %v", st, err)
			}
		})
	}
	c := controlclient.New(ep.Addr, ep.Socket, ep.Secret)
	id, pw, err := c.AddAccount(ctx, "carol", "")
	if err != nil || !strings.HasPrefix(id, "@carol:") || pw == "" {
		t.Fatalf("add account: %s %q %v", id, pw, err)
	}
	var ce *control.Error
	if _, _, err := c.AddAccount(ctx, "carol", "x"); !errors.As(err, &ce) || ce.Status != 400 || ce.Field != "name" {
		t.Fatalf("adding carol twice: %v", err)
	}
	if ids, err := c.Accounts(ctx); err != nil || len(ids) != 2 {
		t.Fatalf("accounts %v %v", ids, err)
	}

	// Config: a valid value is written to the file; an invalid one is
	// refused with the field named and leaves the file as it was.
	if err := c.SetConfig(ctx, "registration", "token"); err == nil || !errors.As(err, &ce) || ce.Field != "registration" {
		t.Fatalf("registration = token without tokens accepted: %v", err)
	}
	if err := c.SetConfig(ctx, "log_level", "debug"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(cfg.File)
	for key, value := range map[string]string{"registration": "sometimes", "max_request_bytes": "lots", "colour": "blue"} {
		if err := c.SetConfig(ctx, key, value); !errors.As(err, &ce) || ce.Field != key || ce.Status != 400 {
			t.Errorf("set %s = %s: %v", key, value, err)
		}
	}
	after, _ := os.ReadFile(cfg.File)
	if string(before) != "log_level = debug\n" || string(after) != string(before) {
		t.Fatalf("config file before %q after %q", before, after)
	}
	if all, err := c.Config(ctx); err != nil || all["server_name"] != cfg.ServerName {
		t.Fatalf("config %v %v", all, err)
	}
	if tok, err := c.LoginToken(ctx, "carol"); err != nil || tok == "" {
		t.Fatalf("login token %q %v", tok, err)
	}
}

// TestControlAPIRefusesStrangers checks the credential, the Host check
// against DNS rebinding, the Origin check against web pages, and bad JSON.
func TestControlAPIRefusesStrangers(t *testing.T) {
	_, cfg := startTestDaemon(t)
	ep, _ := Control(cfg)
	url := "http://" + ep.Addr + "/_hearth/v1/status"
	do := func(mod func(*http.Request)) int {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+ep.Secret)
		mod(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cases := map[string]struct {
		mod  func(*http.Request)
		want int
	}{
		"owner":            {func(*http.Request) {}, 200},
		"no credential":    {func(r *http.Request) { r.Header.Del("Authorization") }, 401},
		"wrong credential": {func(r *http.Request) { r.Header.Set("Authorization", "Bearer guess") }, 401},
		"rebinding host":   {func(r *http.Request) { r.Host = "evil.example:8008" }, 403},
		"foreign origin":   {func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, 403},
		"same origin":      {func(r *http.Request) { r.Header.Set("Origin", "http://"+ep.Addr) }, 200},
	}
	for name, tc := range cases {
		if got := do(tc.mod); got != tc.want {
			t.Errorf("%s: status %d, want %d", name, got, tc.want)
		}
	}
	req, _ := http.NewRequest("POST", "http://"+ep.Addr+"/_hearth/v1/accounts", strings.NewReader(`{"name":`))
	req.Header.Set("Authorization", "Bearer "+ep.Secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("malformed JSON: %v %v", resp.StatusCode, err)
	}
}

// TestConsoleSession checks the console's sign-in against the real daemon:
// the code (in the link's fragment) works once, the session it makes is a
// header, never a cookie, and can read the control API but not mint more
// links or login tokens.
func TestConsoleSession(t *testing.T) {
	_, cfg := startTestDaemon(t)
	ep, _ := Control(cfg)
	c := controlclient.New(ep.Addr, ep.Socket, ep.Secret)
	link, err := c.ConsoleLink(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	code, ok := strings.CutPrefix(link, "/_hearth/#code=")
	if !ok {
		t.Fatalf("link %q", link)
	}
	redeem := func() *http.Response {
		resp, err := http.Post("http://"+ep.Addr+"/_hearth/v1/session", "application/json", strings.NewReader(`{"code":"`+code+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := redeem()
	var sess struct{ Session string }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&sess) != nil || len(resp.Cookies()) != 0 {
		t.Fatalf("redeem: %d %+v cookies %v", resp.StatusCode, sess, resp.Cookies())
	}
	if again := redeem(); again.StatusCode != http.StatusUnauthorized {
		t.Fatalf("link reused: %d", again.StatusCode)
	}
	call := func(method, path string, withSession bool) int {
		req, _ := http.NewRequest(method, "http://"+ep.Addr+path, strings.NewReader("{}"))
		if withSession {
			req.Header.Set(control.SessionHeader, sess.Session)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	for _, tc := range []struct {
		method, path string
		session      bool
		want         int
	}{
		{"GET", "/_hearth/", false, 200},
		{"GET", "/_hearth/v1/status", true, 200},
		{"GET", "/_hearth/v1/status", false, 401},
		{"GET", "/_hearth/qr.png", true, 200},
		{"POST", "/_hearth/v1/console", true, 401},
		{"POST", "/_hearth/v1/open", true, 401},
	} {
		if got := call(tc.method, tc.path, tc.session); got != tc.want {
			t.Errorf("%s %s (session %v): %d, want %d", tc.method, tc.path, tc.session, got, tc.want)
		}
	}
}

// TestStatusCountsOwnerMentions: the tray's unread-mention count is the
// owner's (admin's) unread highlights, and a read receipt clears it.
func TestStatusCountsOwnerMentions(t *testing.T) {
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.File = filepath.Join(cfg.DataDir, "hearth.conf")
	cfg.ClientListen = "127.0.0.1:0"
	cfg.KeyStore = KeyStoreFile
	cfg.Registration = "open"
	cfg.Federation = FederationOff
	var welcome strings.Builder
	d, err := Start(cfg, &welcome, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	cfg.ClientListen = d.Addr()
	base := "http://" + d.Addr() + "/_matrix/client/v3"
	call := func(method, path, token string, body any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(b))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out := map[string]any{}
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, out)
		}
		return out
	}
	owner := ownerName()
	pw := strings.Fields(welcome.String()[strings.Index(welcome.String(), "password"):])[1]
	ownerTok := call("POST", "/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": owner}, "password": pw})["access_token"].(string)
	bobTok := call("POST", "/register", "", map[string]any{"username": "bob", "password": "pw",
		"auth": map[string]any{"type": "m.login.dummy"}})["access_token"].(string)
	roomID := call("POST", "/createRoom", bobTok, map[string]any{"preset": "public_chat"})["room_id"].(string)
	call("POST", "/join/"+roomID, ownerTok, map[string]any{})
	ownerID := "@" + owner + ":" + cfg.ServerName
	ev := call("PUT", "/rooms/"+roomID+"/send/m.room.message/1", bobTok, map[string]any{"msgtype": "m.text",
		"body": "hi", "m.mentions": map[string]any{"user_ids": []string{ownerID}}})["event_id"].(string)

	ep, _ := Control(cfg)
	c := controlclient.New(ep.Addr, ep.Socket, ep.Secret)
	highlights := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			st, err := c.Status(context.Background())
			if err == nil && st.UnreadHighlights == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("unread highlights %v (%v), want %d", st, err, want)
			}
		}
	}
	highlights(1)
	call("POST", "/rooms/"+roomID+"/receipt/m.read/"+ev, ownerTok, map[string]any{})
	highlights(0)
}
