// Package tray is Hearth's system-tray icon: a thin client of the daemon's
// control API that shows its state and offers the everyday actions. It
// holds no state of its own, and reaches the toolkit through the small
// Toolkit interface, so the library underneath could be swapped.
package tray

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
)

// Toolkit is what the tray needs from a system tray library.
type Toolkit interface {
	// Run shows the icon, calls onReady, and returns when Quit is called.
	Run(onReady func())
	Quit()
	SetTooltip(text string)
	// AddItem adds a menu entry; onClick runs on each click.
	AddItem(title string, onClick func()) Item
	AddSeparator()
}

// Item is one menu entry.
type Item interface {
	SetTitle(title string)
	Enable()
	Disable()
}

// Control is what the tray asks of the daemon (controlclient.Client).
type Control interface {
	Status(ctx context.Context) (*control.Status, error)
	Accounts(ctx context.Context) ([]string, error)
	ConsoleLink(ctx context.Context) (string, error)
	Shutdown(ctx context.Context) error
	PauseFederation(ctx context.Context, paused bool) (*control.FederationStatus, error)
	SetFederationMode(ctx context.Context, mode string) (*control.FederationStatus, error)
	SetDiscoveryMode(ctx context.Context, mode string) (*control.DiscoveryStatus, error)
	OpenChat(ctx context.Context) (string, error)
}

// Desktop is what the tray asks of the desktop session.
type Desktop interface {
	OpenURL(url string) error
	CopyText(text string) error
	// StartDaemon starts Hearth in the background.
	StartDaemon() error
}

// Tray is the running tray.
type Tray struct {
	ui        Toolkit
	ctl       Control
	desktop   Desktop
	addr      string // the daemon's loopback address, for links
	refresh   time.Duration
	status    Item
	nearby    Item // "People nearby: N" or the people peers announce, a label (people.go)
	ringing   Item // "Anna is calling", shown while a call rings (ringing.go)
	voicemail Item // "Voicemail from Anna"; a click opens the chat (voicemail.go)
	start     Item
	stop      Item
	pause     Item // Pause federation / Resume federation
	paused    bool // what the last status said, for the pause item's click
	// modes are the three federation mode items, the one in force
	// checked and disabled (fedModes gives their order and titles).
	modes []Item
	// discovery are the three LAN discovery items (discoveryModes), the
	// mode in force checked and disabled.
	discovery []Item
	log       *slog.Logger
}

// New returns a tray for the daemon at addr.
func New(ui Toolkit, ctl Control, desktop Desktop, addr string) *Tray {
	return &Tray{ui: ui, ctl: ctl, desktop: desktop, addr: addr, refresh: 5 * time.Second, log: slog.Default()}
}

// Run shows the tray until Quit is chosen.
func (t *Tray) Run() {
	t.ui.Run(t.ready)
}

func (t *Tray) ready() {
	t.status = t.ui.AddItem("Hearth: …", nil)
	t.status.Disable()
	t.addRinging()
	// A label, until a peer's key changes: then a click opens the
	// console's people-nearby section, where the owner accepts the new key
	// or keeps refusing it.
	t.nearby = t.ui.AddItem("People nearby: 0", func() { t.openConsole("#nearby") })
	t.nearby.Disable()
	t.voicemail = t.ui.AddItem("No voicemail", t.openChat)
	t.voicemail.Disable()
	t.ui.AddSeparator()
	t.ui.AddItem("Open chat", t.openChat)
	t.ui.AddItem("Open Hearth", func() { t.openConsole("") })
	t.ui.AddItem("Open logs", func() { t.openConsole("#logs") })
	t.ui.AddItem("Copy my Matrix ID", t.copyID)
	t.pause = t.ui.AddItem("Pause federation", t.togglePause)
	for _, m := range fedModes {
		t.modes = append(t.modes, t.ui.AddItem(m.title, func() { t.setMode(m.mode) }))
	}
	for _, m := range discoveryModes {
		t.discovery = append(t.discovery, t.ui.AddItem(m.title, func() { t.setDiscovery(m.mode) }))
	}
	t.ui.AddSeparator()
	t.start = t.ui.AddItem("Start Hearth", t.startDaemon)
	t.stop = t.ui.AddItem("Stop Hearth", t.stopDaemon)
	t.ui.AddItem("Quit", t.ui.Quit)
	t.update()
	// The daemon may restart or stop at any time; the tray asks again
	// every few seconds rather than keeping anything of its own.
	go func() {
		for range time.Tick(t.refresh) {
			t.update()
		}
	}()
}

func (t *Tray) update() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := t.ctl.Status(ctx)
	if err != nil {
		text := "Hearth is not running"
		if !errors.Is(err, controlclient.ErrNotRunning) {
			text = "Hearth: " + err.Error()
		}
		t.status.SetTitle(text)
		t.ui.SetTooltip(text)
		t.showRinging(nil)
		t.stop.Disable()
		t.start.Enable()
		t.pause.Disable()
		for i, m := range fedModes {
			t.modes[i].SetTitle(m.title)
			t.modes[i].Disable()
		}
		for i, m := range discoveryModes {
			t.discovery[i].SetTitle(m.title)
			t.discovery[i].Disable()
		}
		return
	}
	for i, m := range discoveryModes {
		if m.mode == st.Discovery {
			t.discovery[i].SetTitle("✓ " + m.title)
			t.discovery[i].Disable()
		} else {
			t.discovery[i].SetTitle(m.title)
			t.discovery[i].Enable()
		}
	}
	for i, m := range fedModes {
		if m.mode == st.FederationMode {
			t.modes[i].SetTitle("✓ " + m.title)
			t.modes[i].Disable()
		} else {
			t.modes[i].SetTitle(m.title)
			t.modes[i].Enable()
		}
	}
	federation := "federation off"
	switch {
	case st.FederationPaused:
		federation = "federation paused"
		t.pause.SetTitle("Resume federation")
		t.pause.Enable()
	case st.Federation:
		federation = "federation on (" + st.FederationMode + ")"
		if st.Reachable != nil && !*st.Reachable {
			federation = "federation on, not reachable"
		}
		t.pause.SetTitle("Pause federation")
		t.pause.Enable()
	default:
		t.pause.SetTitle("Pause federation")
		t.pause.Disable()
	}
	t.paused = st.FederationPaused
	t.showRinging(st.Ringing)
	title := t.nearbyTitle(ctx, st.Peers)
	if st.PeerKeyChanges > 0 {
		t.nearby.SetTitle(fmt.Sprintf("%s · %d key changed: accept or refuse…", title, st.PeerKeyChanges))
		t.nearby.Enable()
	} else {
		t.nearby.SetTitle(title)
		t.nearby.Disable()
	}
	t.showVoicemail(st)
	text := fmt.Sprintf("Hearth on %s · %s · %d nearby", st.ServerName, federation, st.Peers)
	if st.UnreadHighlights > 0 {
		text += fmt.Sprintf(" · %d unread mentions", st.UnreadHighlights)
	}
	t.status.SetTitle(text)
	t.ui.SetTooltip(text)
	t.stop.Enable()
	t.start.Disable()
}

// openConsole opens the web console, logged in, at an optional anchor.
func (t *Tray) openConsole(anchor string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	path, err := t.ctl.ConsoleLink(ctx)
	if err == nil {
		err = t.desktop.OpenURL("http://" + t.addr + path + anchor)
	}
	if err != nil {
		t.log.Warn("tray: open console", "err", err)
	}
}

// openChat opens the configured chat client logged in as the owner, or,
// with none configured, the console's page on connecting a client.
func (t *Tray) openChat() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	link, err := t.ctl.OpenChat(ctx)
	if err == nil && link == "" {
		t.openConsole("#connect")
		return
	}
	if err == nil {
		err = t.desktop.OpenURL(link)
	}
	if err != nil {
		t.log.Warn("tray: open chat", "err", err)
	}
}

// copyID copies the owner's Matrix ID: the first account is the one made
// at first start.
func (t *Tray) copyID() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ids, err := t.ctl.Accounts(ctx)
	if err == nil && len(ids) == 0 {
		err = errors.New("no accounts")
	}
	if err == nil {
		err = t.desktop.CopyText(ids[0])
	}
	if err != nil {
		t.log.Warn("tray: copy Matrix ID", "err", err)
	}
}

// togglePause pauses or resumes federation, whichever the menu offered.
func (t *Tray) togglePause() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := t.ctl.PauseFederation(ctx, !t.paused); err != nil {
		t.log.Warn("tray: pause federation", "err", err)
	}
	t.update()
}

// fedModes are the tray's federation mode items.
var fedModes = []struct{ mode, title string }{
	{"lan", "Federation: people nearby (LAN)"},
	{"internet", "Federation: internet"},
	{"off", "Federation: off"},
}

// setMode switches the federation mode; internet is refused by the daemon
// unless a CA certificate is configured, which the log then says.
func (t *Tray) setMode(mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := t.ctl.SetFederationMode(ctx, mode)
	if err != nil {
		t.log.Warn("tray: federation mode", "err", err)
	} else if st.RestartRequired {
		t.log.Info("tray: federation mode stored; restart Hearth to apply it", "mode", mode)
	}
	t.update()
}

// discoveryModes are the tray's LAN discovery items (lan_discovery).
var discoveryModes = []struct{ mode, title string }{
	{"on", "Discovery: find and be found"},
	{"browse", "Discovery: find others only"},
	{"off", "Discovery: off"},
}

// setDiscovery switches LAN discovery; the daemon applies it at once.
func (t *Tray) setDiscovery(mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := t.ctl.SetDiscoveryMode(ctx, mode); err != nil {
		t.log.Warn("tray: discovery mode", "err", err)
	}
	t.update()
}

func (t *Tray) startDaemon() {
	if err := t.desktop.StartDaemon(); err != nil {
		t.log.Warn("tray: start Hearth", "err", err)
	}
	time.AfterFunc(time.Second, t.update)
}

func (t *Tray) stopDaemon() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.ctl.Shutdown(ctx); err != nil {
		t.log.Warn("tray: stop Hearth", "err", err)
	}
	time.AfterFunc(time.Second, t.update)
}
