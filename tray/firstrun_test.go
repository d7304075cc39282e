package tray

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
)

// loginDaemon is the daemon as a tray at login finds it: not running
// until told, then with the first-run welcome pending or not.
type loginDaemon struct {
	Control
	mu           sync.Mutex
	running      bool
	pending      bool
	firstShown   bool // what WelcomeShown answers
	welcomeCalls int
}

func (d *loginDaemon) Status(context.Context) (*control.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.running {
		return nil, controlclient.ErrNotRunning
	}
	return &control.Status{ServerName: "test", FederationMode: "off", Discovery: "off", WelcomePending: d.pending}, nil
}

func (d *loginDaemon) ConsoleLink(context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.running {
		return "", controlclient.ErrNotRunning
	}
	return "/_hearth/#code=one-time", nil
}

func (d *loginDaemon) Peers(context.Context) (*control.PeersStatus, error) {
	return &control.PeersStatus{}, nil
}

func (d *loginDaemon) WelcomeShown(context.Context) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.welcomeCalls++
	first := d.firstShown
	d.firstShown = false
	return first, nil
}

// loginDesktop records what the tray started and opened.
type loginDesktop struct {
	mu     sync.Mutex
	starts int
	exited chan error
	urls   []string
	files  []string
}

func (d *loginDesktop) StartDaemon() (<-chan error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.starts++
	return d.exited, nil
}
func (d *loginDesktop) OpenURL(u string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.urls = append(d.urls, u)
	return nil
}
func (d *loginDesktop) OpenFile(p string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.files = append(d.files, p)
	return nil
}
func (d *loginDesktop) CopyText(string) error { return nil }

func (d *loginDesktop) counts() (int, []string, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.starts, append([]string(nil), d.urls...), append([]string(nil), d.files...)
}

// loginTray runs a tray whose refreshes are the test's own: no ticker, no
// refresh a second after a start; exits reports each daemon exit handled.
func loginTray(ctl Control, desk Desktop, opts Options) (tr *Tray, ui *menuUI, exits chan struct{}) {
	ui, exits = &menuUI{}, make(chan struct{}, 1)
	tr = New(ui, ctl, desk, "127.0.0.1:1").WithOptions(opts)
	tr.refresh = time.Hour
	tr.later = func(func()) {}
	tr.exitHandled = func() { exits <- struct{}{} }
	tr.Run()
	return tr, ui, exits
}

// TestTrayStartsDaemonOnceAtLogin: a tray started at login (--start-daemon)
// with no daemon answering starts one, once; when that daemon exits with
// an error the status line says it could not start, refreshes do not
// start it again, and Open logs opens the log file, since there is no
// console to show it. A tray started otherwise starts nothing by itself.
func TestTrayStartsDaemonOnceAtLogin(t *testing.T) {
	ctl := &loginDaemon{}
	desk := &loginDesktop{exited: make(chan error, 1)}
	tr, ui, exits := loginTray(ctl, desk, Options{StartDaemon: true, LogFile: "/data/hearth.log"})
	if starts, _, _ := desk.counts(); starts != 1 {
		t.Fatalf("the tray at login started Hearth %d times, want 1", starts)
	}

	desk.exited <- errors.New("exit status 5")
	<-exits
	want := "Hearth could not start (exit status 5): see Open logs"
	if ui.find(want) == nil {
		t.Fatalf("after the daemon failed, menu %q", ui.visible())
	}
	for range 3 {
		tr.update()
	}
	if starts, _, _ := desk.counts(); starts != 1 {
		t.Fatalf("the tray started a failing Hearth %d times, want 1 (no loop)", starts)
	}
	if ui.find(want) == nil || ui.find("Start Hearth") == nil || !ui.find("Start Hearth").enabled {
		t.Fatalf("the failure must stay shown with Start Hearth offered: %q", ui.visible())
	}
	ui.find("Open logs").onClick()
	if _, urls, files := desk.counts(); len(files) != 1 || files[0] != "/data/hearth.log" || len(urls) != 0 {
		t.Fatalf("Open logs with no daemon opened files %q, urls %q", files, urls)
	}

	// Started by hand, it runs: the failure line goes.
	ctl.mu.Lock()
	ctl.running = true
	ctl.mu.Unlock()
	tr.update()
	if ui.find(want) != nil || !strings.HasPrefix(ui.items[0].title, "Hearth on test") {
		t.Fatalf("Hearth runs, menu %q", ui.visible())
	}

	// A tray not started at login (a person ran 'hearth tray') starts nothing.
	other := &loginDesktop{exited: make(chan error, 1)}
	loginTray(&loginDaemon{}, other, Options{})
	if starts, _, _ := other.counts(); starts != 0 {
		t.Fatalf("a tray without --start-daemon started Hearth %d times", starts)
	}
	// Nor does one at login when Hearth already runs.
	loginTray(&loginDaemon{running: true}, other, Options{StartDaemon: true})
	if starts, _, _ := other.counts(); starts != 0 {
		t.Fatalf("the tray at login started a second Hearth %d times", starts)
	}
}

// TestTrayOpensWelcomeOnce: while the daemon says the first-run welcome is
// pending, a tray at login opens the console on it once, and only when it
// was the first to tell the daemon; a tray started otherwise leaves it.
func TestTrayOpensWelcomeOnce(t *testing.T) {
	ctl := &loginDaemon{running: true, pending: true, firstShown: true}
	desk := &loginDesktop{exited: make(chan error, 1)}
	tr, _, _ := loginTray(ctl, desk, Options{StartDaemon: true})
	tr.update()
	tr.update()
	if _, urls, _ := desk.counts(); len(urls) != 1 || urls[0] != "http://127.0.0.1:1/_hearth/#code=one-time#welcome" {
		t.Fatalf("the tray at login opened %q, want the console's welcome once", urls)
	}
	if ctl.welcomeCalls != 1 {
		t.Fatalf("welcome/shown called %d times", ctl.welcomeCalls)
	}

	// Another tray finds the welcome shown already (the daemon says so).
	ctl2 := &loginDaemon{running: true, pending: true}
	desk2 := &loginDesktop{exited: make(chan error, 1)}
	loginTray(ctl2, desk2, Options{StartDaemon: true})
	if _, urls, _ := desk2.counts(); len(urls) != 0 {
		t.Fatalf("a second tray opened %q", urls)
	}
	// And a tray a person started does not ask at all.
	ctl3 := &loginDaemon{running: true, pending: true, firstShown: true}
	loginTray(ctl3, desk2, Options{})
	if ctl3.welcomeCalls != 0 {
		t.Fatalf("a tray without --start-daemon marked the welcome shown")
	}
}

// TestDaemonExitMeaning: a daemon that found Hearth running (exit 3) is
// no failure to the tray; any other error exit is.
func TestDaemonExitMeaning(t *testing.T) {
	if err := daemonExit(exec.Command("sh", "-c", "exit 3").Run()); err != nil {
		t.Fatalf("exit 3 (Hearth is running): %v", err)
	}
	if err := daemonExit(exec.Command("sh", "-c", "exit 5").Run()); err == nil {
		t.Fatal("exit 5 is a failure")
	}
	if err := daemonExit(exec.Command("true").Run()); err != nil {
		t.Fatal(err)
	}
}
