package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// privateBus starts a D-Bus session bus of the test's own and returns a
// connection to it and its address.
func privateBus(t *testing.T) (*dbus.Conn, string) {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Fatal("dbus-daemon is not installed (make test installs dbus)")
	}
	bus := exec.Command("dbus-daemon", "--session", "--nofork", "--print-address=1",
		"--address=unix:path="+filepath.Join(t.TempDir(), "bus"))
	out, err := bus.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	noErr(t, bus.Start(), "start dbus-daemon")
	t.Cleanup(func() { bus.Process.Kill(); bus.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	noErr(t, err, "read the bus address")
	addr = strings.TrimSpace(addr)
	conn, err := dbus.Connect(addr)
	noErr(t, err, "connect to the private bus")
	t.Cleanup(func() { conn.Close() })
	return conn, addr
}

// menuItem is one entry of the tray's dbusmenu layout.
type menuItem struct {
	id    int32
	label string
}

// trayMenu reads the tray's menu over com.canonical.dbusmenu, as a desktop
// panel does.
func trayMenu(t *testing.T, obj dbus.BusObject) []menuItem {
	t.Helper()
	var revision uint32
	var layout struct {
		ID       int32
		Props    map[string]dbus.Variant
		Children []dbus.Variant
	}
	noErr(t, obj.Call("com.canonical.dbusmenu.GetLayout", 0, int32(0), int32(-1), []string{}).Store(&revision, &layout), "GetLayout")
	var items []menuItem
	for _, c := range layout.Children {
		fields, ok := c.Value().([]any)
		if !ok || len(fields) < 2 {
			continue
		}
		id, _ := fields[0].(int32)
		props, _ := fields[1].(map[string]dbus.Variant)
		label, _ := props["label"].Value().(string)
		items = append(items, menuItem{id, label})
	}
	return items
}

// trayUI is a running `hearth tray` on a private D-Bus session, driven
// through its StatusNotifierItem menu the way a desktop panel does.
type trayUI struct {
	t    *testing.T
	menu dbus.BusObject
	item dbus.BusObject // the StatusNotifierItem itself (its icon, title)
}

// startTray starts the tray for daemon d with extra environment and waits
// for its menu to show the daemon's status.
func startTray(t *testing.T, d *Daemon, env ...string) *trayUI {
	t.Helper()
	conn, addr := privateBus(t)
	tray := exec.Command(hearthBin, "tray", "--data-dir", d.DataDir, "--client-listen", d.Addr, "--server-name", d.ServerName(), "--key-store", "file")
	tray.Env = append(append(childEnv(), "DBUS_SESSION_BUS_ADDRESS="+addr), env...)
	noErr(t, tray.Start(), "start hearth tray")
	t.Cleanup(func() { tray.Process.Kill(); tray.Wait() })
	name := ""
	waitFor(t, "the tray's menu with the daemon's status", func() ([]menuItem, bool) {
		var names []string
		if conn.BusObject().Call("org.freedesktop.DBus.ListNames", 0).Store(&names) != nil {
			return nil, false
		}
		for _, n := range names {
			if strings.HasPrefix(n, "org.kde.StatusNotifierItem-") {
				name = n
			}
		}
		if name == "" {
			return nil, false
		}
		items := trayMenu(t, conn.Object(name, "/StatusNotifierItem/menu"))
		return items, len(items) > 0 && strings.Contains(items[0].label, "Hearth on "+d.ServerName())
	})
	return &trayUI{t: t, menu: conn.Object(name, "/StatusNotifierItem/menu"), item: conn.Object(name, "/StatusNotifierItem")}
}

// click clicks the menu entry with this label.
func (u *trayUI) click(label string) {
	u.t.Helper()
	for _, it := range trayMenu(u.t, u.menu) {
		if it.label == label {
			noErr(u.t, u.menu.Call("com.canonical.dbusmenu.Event", 0, it.id, "clicked", dbus.MakeVariant(""), uint32(0)).Err, "click %s", label)
			return
		}
	}
	u.t.Fatalf("no %q in the tray menu %+v", label, trayMenu(u.t, u.menu))
}

// TestTrayOverDBus runs `hearth tray` against a real daemon on a private
// D-Bus session and drives its StatusNotifierItem menu the way a panel
// does: the status line shows the daemon, "Copy my Matrix ID" copies the
// owner's ID (through a stand-in clipboard tool, since there is no display
// here), "Stop Hearth" stops the daemon, which the control API then
// reports as not running, and "Start Hearth" brings it back.
func TestTrayOverDBus(t *testing.T) {
	d := StartDaemon(t)
	bin := t.TempDir()
	clip := filepath.Join(t.TempDir(), "clipboard")
	noErr(t, os.WriteFile(filepath.Join(bin, "wl-copy"), []byte("#!/bin/sh\ncat > \"$CLIP_FILE\"\n"), 0o755), "fake wl-copy")
	ui := startTray(t, d, "CLIP_FILE="+clip, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	click, menu := ui.click, ui.menu

	click("Copy my Matrix ID")
	waitFor(t, "the owner's Matrix ID on the clipboard", func() (string, bool) {
		b, err := os.ReadFile(clip)
		return string(b), err == nil && strings.HasPrefix(string(b), "@") && strings.HasSuffix(string(b), ":"+serverName)
	})

	click("Stop Hearth")
	waitFor(t, "the daemon to stop", func() (bool, bool) { return true, !d.Running() })
	status := func() int {
		code, _, _ := runHearth(t, "status", "--data-dir", d.DataDir, "--client-listen", d.Addr)
		return code
	}
	if code := status(); code != 4 {
		t.Fatalf("status after Stop Hearth: exit %d, want 4 (not running)", code)
	}

	// The tray notices, and starts it again on request.
	waitFor(t, "the tray to show Hearth as not running", func() (bool, bool) {
		items := trayMenu(t, menu)
		return true, len(items) > 0 && items[0].label == "Hearth is not running"
	})
	click("Start Hearth")
	waitFor(t, "Hearth started from the tray", func() (int, bool) { c := status(); return c, c == 0 })
	waitFor(t, "the tray to show Hearth running again", func() (bool, bool) {
		items := trayMenu(t, menu)
		return true, len(items) > 0 && strings.Contains(items[0].label, "Hearth on "+serverName)
	})
	click("Stop Hearth")
	waitFor(t, "the tray-started daemon to stop", func() (int, bool) { c := status(); return c, c == 4 })
}

// waitFor polls check until it reports done, failing the test after the
// harness deadline; it returns check's last value.
func waitFor[T any](t *testing.T, what string, check func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for {
		v, ok := check()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitDeadline)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
