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
	"sync"
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
	// WelcomeShown records that the console's first-run welcome was
	// opened; true only for the first caller (welcome.go).
	WelcomeShown(ctx context.Context) (bool, error)
}

// Desktop is what the tray asks of the desktop session.
type Desktop interface {
	OpenURL(url string) error
	CopyText(text string) error
	// OpenFile opens a local file with the desktop's default application
	// (the log file, while no daemon answers to show it in the console).
	OpenFile(path string) error
	// StartDaemon starts Hearth in the background. The channel receives
	// once, when that process ends: nil for a clean exit (or when another
	// Hearth was already running), else why it failed.
	StartDaemon() (exited <-chan error, err error)
}

// Options are how the tray was started (cmd/hearth/tray.go).
type Options struct {
	// StartDaemon: the tray runs at login from an installer's autostart
	// entry (hearth tray --start-daemon). It starts Hearth once if no
	// daemon answers (never again by itself if that fails: the status
	// line then says so and Open logs shows the log), and opens the
	// console's first-run welcome once (welcome.go).
	StartDaemon bool
	// LogFile is where a daemon this tray starts logs: Open logs opens it
	// while no daemon answers to show its log in the console.
	LogFile string
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
	opts      Options

	mu sync.Mutex // guards what the click handlers and the refresh share below
	// down: the last status said no daemon answers.
	down bool
	// failure replaces "Hearth is not running" once a daemon this tray
	// started exited with an error; answered says whether it answered
	// since it was started ("could not start" or "stopped").
	failure  string
	answered bool
	// welcomeAsked: this tray asked to open the first-run welcome.
	welcomeAsked bool

	// later runs a refresh after a start or stop has had a moment (a
	// second); exitHandled is told when a daemon's exit has been shown.
	// Tests replace both to run without timers.
	later       func(func())
	exitHandled func()
}

// New returns a tray for the daemon at addr.
func New(ui Toolkit, ctl Control, desktop Desktop, addr string) *Tray {
	return &Tray{ui: ui, ctl: ctl, desktop: desktop, addr: addr, refresh: 5 * time.Second, log: slog.Default(),
		later: func(f func()) { time.AfterFunc(time.Second, f) }, exitHandled: func() {}}
}

// WithOptions sets how the tray was started; it returns t.
func (t *Tray) WithOptions(o Options) *Tray {
	t.opts = o
	return t
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
	t.ui.AddItem("Open logs", t.openLogs)
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
	t.startAtLogin()
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
	t.mu.Lock()
	down := errors.Is(err, controlclient.ErrNotRunning)
	t.down = down
	failure := t.failure
	if err == nil {
		t.failure, t.answered = "", true
	}
	t.mu.Unlock()
	if err != nil {
		text := "Hearth is not running"
		switch {
		case failure != "" && down:
			text = failure
		case !down:
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
	if st.WelcomePending {
		t.openWelcome(ctx)
	}
}

// openConsole opens the web console, logged in, at an optional anchor.
func (t *Tray) openConsole(anchor string) {
	if err := t.tryConsole(anchor); err != nil {
		t.log.Warn("tray: open console", "err", err)
	}
}

func (t *Tray) tryConsole(anchor string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	path, err := t.ctl.ConsoleLink(ctx)
	if err != nil {
		return err
	}
	return t.desktop.OpenURL("http://" + t.addr + path + anchor)
}

// openLogs shows the log in the console, or, while no daemon answers (it
// could not start, or it stopped), the log file a daemon this tray starts
// writes.
func (t *Tray) openLogs() {
	err := t.tryConsole("#logs")
	if errors.Is(err, controlclient.ErrNotRunning) && t.opts.LogFile != "" {
		err = t.desktop.OpenFile(t.opts.LogFile)
	}
	if err != nil {
		t.log.Warn("tray: open logs", "err", err)
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

// startAtLogin starts Hearth once when the tray runs at login and no
// daemon answers. Once: if that daemon fails, the status line says so and
// the tray waits for the person (Start Hearth, Open logs) rather than
// starting it again and again.
func (t *Tray) startAtLogin() {
	t.mu.Lock()
	down := t.down
	t.mu.Unlock()
	if t.opts.StartDaemon && down {
		t.startDaemon()
	}
}

func (t *Tray) startDaemon() {
	exited, err := t.desktop.StartDaemon()
	t.mu.Lock()
	t.failure, t.answered = "", false
	if err != nil {
		t.failure = "Hearth could not start: " + err.Error()
	}
	t.mu.Unlock()
	if err != nil {
		t.log.Warn("tray: start Hearth", "err", err)
		t.update()
		return
	}
	go func() {
		if err := <-exited; err != nil {
			t.daemonFailed(err)
		}
		t.exitHandled()
	}()
	t.later(t.update)
}

// daemonFailed is told that a daemon this tray started exited with err.
func (t *Tray) daemonFailed(err error) {
	t.mu.Lock()
	if t.answered {
		t.failure = fmt.Sprintf("Hearth stopped (%v): see Open logs", err)
	} else {
		t.failure = fmt.Sprintf("Hearth could not start (%v): see Open logs", err)
	}
	t.mu.Unlock()
	t.log.Warn("tray: Hearth exited", "err", err)
	t.update()
}

// openWelcome opens the console's first-run welcome (the owner's user ID,
// the homeserver, setting the first password, connecting a client) once:
// only a tray started at login does, and only the first to ask the daemon.
func (t *Tray) openWelcome(ctx context.Context) {
	t.mu.Lock()
	ask := t.opts.StartDaemon && !t.welcomeAsked
	t.welcomeAsked = true
	t.mu.Unlock()
	if !ask {
		return
	}
	first, err := t.ctl.WelcomeShown(ctx)
	if err != nil {
		t.log.Warn("tray: first-run welcome", "err", err)
		t.mu.Lock()
		t.welcomeAsked = false // asked again at the next refresh
		t.mu.Unlock()
		return
	}
	if first {
		t.openConsole("#welcome")
	}
}

func (t *Tray) stopDaemon() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.ctl.Shutdown(ctx); err != nil {
		t.log.Warn("tray: stop Hearth", "err", err)
	}
	t.later(t.update)
}
