package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"github.com/hearth-chat/hearth/localapi/control"
)

// loginTray is `hearth tray --start-daemon` as an installer's autostart
// entry runs it at login, on a private D-Bus session, with a stand-in
// xdg-open that records what the tray opens (one path or URL a line in
// opened, appended).
type loginTray struct {
	*trayUI
	dataDir, addr, opened string
}

func startLoginTray(t *testing.T, dataDir string) *loginTray {
	t.Helper()
	conn, busAddr := privateBus(t)
	bin, opened := t.TempDir(), filepath.Join(t.TempDir(), "opened")
	noErr(t, os.WriteFile(filepath.Join(bin, "xdg-open"), []byte("#!/bin/sh\nprintf '%s\\n' \"$1\" >> \""+opened+"\"\n"), 0o755), "fake xdg-open")
	addr := freeAddr(t)
	// The daemon's flags pass through to the `hearth run` the tray
	// starts: test traffic stays on loopback, keys in the data dir.
	tray := exec.Command(hearthBin, "tray", "--start-daemon", "--data-dir", dataDir, "--client-listen", addr,
		"--server-name", serverName, "--key-store", "file", "--federation", "off", "--lan-discovery", "off")
	tray.Env = append(childEnv(), "DBUS_SESSION_BUS_ADDRESS="+busAddr,
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "XDG_RUNTIME_DIR="+t.TempDir())
	noErr(t, tray.Start(), "start hearth tray --start-daemon")
	t.Cleanup(func() { tray.Process.Kill(); tray.Wait() })
	name := waitFor(t, "the tray's icon on the bus", func() (string, bool) {
		var names []string
		conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names)
		for _, n := range names {
			if strings.HasPrefix(n, "org.kde.StatusNotifierItem-") {
				return n, true
			}
		}
		return "", false
	})
	return &loginTray{trayUI: &trayUI{t: t, menu: conn.Object(name, "/StatusNotifierItem/menu")},
		dataDir: dataDir, addr: addr, opened: opened}
}

// status is the tray's first menu line.
func (u *loginTray) status() string {
	items := trayMenu(u.t, u.menu)
	if len(items) == 0 {
		return ""
	}
	return items[0].label
}

// openedLines is what the tray has opened so far.
func (u *loginTray) openedLines() []string {
	b, _ := os.ReadFile(u.opened)
	return strings.Fields(string(b))
}

var launchTarget = regexp.MustCompile(`location\.replace\(("[^"]*")\)`)

// TestTrayAtLoginFirstRun is the first run from an installer with no
// terminal at any step: the tray at login finds no daemon and starts one,
// which creates the owner; the tray opens the console once, on its
// welcome; the welcome (through the page's own calls, with the session the
// one-time link gives) shows the homeserver and user ID and sets the
// password; a Matrix client logs in with it.
func TestTrayAtLoginFirstRun(t *testing.T) {
	u := startLoginTray(t, t.TempDir())
	// The daemon runs detached from the tray: stop it through the tray,
	// as a person would (runHearth's context ends with the test body).
	status := func() int {
		cmd := exec.Command(hearthBin, "status", "--data-dir", u.dataDir, "--client-listen", u.addr)
		cmd.Env = childEnv()
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				return ee.ExitCode()
			}
			return -1
		}
		return 0
	}
	t.Cleanup(func() {
		if status() == 0 {
			u.click("Stop Hearth")
			waitFor(t, "the tray-started daemon to stop", func() (int, bool) { c := status(); return c, c == 4 })
		}
	})

	waitFor(t, "the tray to start Hearth and show it running", func() (string, bool) {
		s := u.status()
		return s, strings.HasPrefix(s, "Hearth on "+serverName)
	})
	page := waitFor(t, "the tray to open the console's welcome", func() (string, bool) {
		lines := u.openedLines()
		return strings.Join(lines, " "), len(lines) > 0
	})
	b, err := os.ReadFile(strings.TrimPrefix(page, "file://"))
	noErr(t, err, "read the launch page")
	m := launchTarget.FindSubmatch(b)
	var link string
	if m == nil || json.Unmarshal(m[1], &link) != nil {
		t.Fatalf("launch page without a link:\n%s", b)
	}
	code, ok := strings.CutPrefix(link, "http://"+u.addr+"/_hearth/#code=")
	code, anchor, _ := strings.Cut(code, "#")
	if !ok || anchor != "welcome" {
		t.Fatalf("the tray opened %q, want the console's welcome", link)
	}

	// The page's calls, with the session its one-time code gives.
	hc := &http.Client{}
	post := func(path, session, body string) *http.Response {
		req, _ := http.NewRequest("POST", "http://"+u.addr+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if session != "" {
			req.Header.Set(control.SessionHeader, session)
		}
		resp, err := hc.Do(req)
		noErr(t, err, "POST %s", path)
		return resp
	}
	resp := post("/_hearth/v1/session", "", `{"code":"`+code+`"}`)
	var sess struct{ Session string }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&sess) != nil {
		t.Fatalf("redeem the tray's link: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", "http://"+u.addr+"/_hearth/v1/welcome", nil)
	req.Header.Set(control.SessionHeader, sess.Session)
	resp, err = hc.Do(req)
	noErr(t, err, "GET welcome")
	var wel control.Welcome
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&wel) != nil || !wel.CanSetPassword ||
		wel.Homeserver != "http://"+u.addr || !strings.HasSuffix(wel.UserID, ":"+serverName) {
		t.Fatalf("welcome: %d %+v", resp.StatusCode, wel)
	}
	if resp := post("/_hearth/v1/welcome/password", sess.Session, `{"password":"chosen at first run"}`); resp.StatusCode != 200 {
		t.Fatalf("set the first password: %d", resp.StatusCode)
	}
	c, err := mautrix.NewClient("http://"+u.addr, "", "")
	noErr(t, err, "client")
	_, err = c.Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: wel.UserID}, Password: "chosen at first run"})
	noErr(t, err, "log in with the password set in the welcome")
	if len(u.openedLines()) != 1 {
		t.Fatalf("the tray opened more than the welcome: %q", u.openedLines())
	}
}

// TestTrayAtLoginStartFails: when the daemon the tray starts at login
// cannot start (here its data file is damaged), the status line says so
// rather than "not running", and Open logs opens the log file, which says
// why.
func TestTrayAtLoginStartFails(t *testing.T) {
	dir := t.TempDir()
	noErr(t, os.WriteFile(filepath.Join(dir, "hearth.db"), []byte("not a bbolt file, long enough to be read as one"), 0o600), "damage hearth.db")
	u := startLoginTray(t, dir)
	waitFor(t, "the tray to show that Hearth could not start", func() (string, bool) {
		s := u.status()
		return s, strings.HasPrefix(s, "Hearth could not start (exit status 5)") && strings.HasSuffix(s, "see Open logs")
	})
	u.click("Open logs")
	logFile := filepath.Join(dir, "hearth.log")
	waitFor(t, "Open logs to open the log file", func() ([]string, bool) {
		lines := u.openedLines()
		return lines, len(lines) == 1 && lines[0] == logFile
	})
	b, err := os.ReadFile(logFile)
	noErr(t, err, "read the log file")
	if !strings.Contains(string(b), "hearth did not start") {
		t.Fatalf("the log file does not say why:\n%s", b)
	}
}
