// Package daemon wires Hearth together: it loads the config, opens the
// store, loads the signing key, builds the services and listeners, and
// starts and stops them in order. It owns nothing a request touches; those
// are the services it builds.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/hearth-chat/hearth/appservice"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/calls/agent"
	"github.com/hearth-chat/hearth/discovery"
	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/delayed"
	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/media"
	"github.com/hearth-chat/hearth/internal/netmon"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/search"
	"github.com/hearth-chat/hearth/internal/secrets"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/localapi/matrix"
	"github.com/hearth-chat/hearth/push"
)

// Version, Commit and BuildDate are set at build time with -ldflags
// "-X ...daemon.Version=..." (make dist: cmd/hearth-dist).
var (
	Version   = "dev"
	Commit    = ""
	BuildDate = ""
)

// dbFile is the one bbolt file under the data dir.
const dbFile = "hearth.db"

// Daemon is a running Hearth.
type Daemon struct {
	appsvc   *appservice.Registry // application services (appservice.go)
	asQueue  *appservice.Queue    // their transactions (appservice.go)
	cfg      Config
	db       *store.DB
	accounts *account.Accounts
	rooms    *room.Engine
	keys     *e2ee.Service    // device keys, to-device queues, backups
	search   *search.Index    // full-text index for /search; follows the stream
	push     *push.Service    // rule evaluation and pushers; follows the stream
	delayed  *delayed.Service // MSC4140 delayed events: one timer for the next one due
	server   *http.Server
	api      *matrix.Server // closed before the store: presence writes from timers
	listener net.Listener
	logs     *LogRing     // recent log lines for the control API
	control  *http.Server // the control API on the unix socket, if any
	fed      *fed         // the Server-Server API, when federation is on
	turn     *turnRelay   // TURN for calls (turn.go)
	calls    *agent.Agent // echo test and voicemail (calls.go); follows the stream
	vm       *agent.Voicemail
	stopOnce sync.Once
	stopped  chan struct{} // closed when the control API asks to stop
	// closers stops what Start started, in reverse (closers.go).
	closers closers

	// lan is LAN discovery while lan_discovery is on or browse (nil
	// otherwise); lanMode is the mode in force and lanKey what
	// startDiscovery needs to start it again when the control API
	// switches it (discoverymode.go). Under lanMu: the switch replaces
	// them while the control API reads them.
	lanMu       sync.Mutex
	lan         *discovery.Service
	lanMode     string
	lanKey      *secrets.SigningKey
	lanSwitchMu sync.Mutex // one switch at a time
	peopleHook  sync.Once  // the OnProfileChange hook is registered once (nearby.go)
	nearby      *nearbyDir // people nearby in the user directory (daemon/nearby.go)

	// fedModeWanted is the federation mode last written through the
	// control API ("" until then: cfg.Federation), for the status to say
	// whether a restart is needed (fedmode.go).
	fedModeMu     sync.Mutex
	fedModeWanted string

	limits netLimits // deadlines and connection caps of every listener (listen.go)
	// net is the one network monitor (links, addresses, waking from
	// sleep) that federation and discovery share.
	net *netmon.Monitor
}

// Start opens everything and begins serving; it returns once the client
// API accepts connections. out receives the one-time welcome message;
// logs, if not nil, is the ring the log output is also written to.
func Start(cfg Config, out io.Writer, logs *LogRing) (*Daemon, error) {
	if logs == nil {
		logs = NewLogRing(1000)
	}
	sec, warning, err := openSecrets(cfg)
	if err != nil {
		return nil, err
	}
	if warning != "" {
		slog.Warn(warning)
	}
	key, keyCreated, err := secrets.LoadOrCreateSigningKey(sec)
	if err != nil {
		return nil, err
	}
	// openStore may replace a machine-name default with the recorded name,
	// so nothing reads cfg.ServerName before it. Its one write (recording
	// the name) commits before the notifier exists and moves no position.
	stack, err := room.Open(room.Options{
		Store: store.Options{
			// A write is work, whoever made it (a request, a delayed
			// event's timer, the search indexer): the GC back on.
			OnCommit: func(uint64) { theIdleGC.touch() },
		},
		OpenStore: func(opts store.Options, engine *room.Config) (*store.DB, error) {
			db, err := openStore(&cfg, opts, key, keyCreated)
			engine.ServerName = cfg.ServerName
			return db, err
		},
		Engine: room.Config{KeyID: key.ID, PrivateKey: key.Key, DefaultVersion: cfg.RoomVersion},
	})
	if err != nil {
		return nil, err
	}
	db, notifier := stack.DB, stack.Notifier

	d := &Daemon{cfg: cfg, db: db, logs: logs, stopped: make(chan struct{}),
		limits: cfg.net.withDefaults(raiseFileLimit()), net: netmon.New()}
	d.closers.push("store", func(context.Context) error { return db.Close() }) // last: after every writer
	// abort undoes a Start that failed part-way: what started stops.
	abort := func(err error) (*Daemon, error) {
		d.closers.close(context.Background())
		return nil, err
	}
	slog.Debug("listener limits", "client_conns", d.limits.clientConns, "federation_conns", d.limits.fedConns,
		"federation_conns_per_address", d.limits.fedPerAddr, "idle", d.limits.idle, "body", d.limits.body, "write", d.limits.write)
	d.accounts = account.New(db, cfg.ServerName)
	d.rooms = stack.Engine
	if err := d.firstStart(out); err != nil {
		return abort(err)
	}
	api := matrix.New(d.accounts, d.rooms, matrix.Config{
		MaxBodyBytes: cfg.MaxRequestBytes, Registration: cfg.Registration,
		RegistrationTokens: splitList(cfg.RegistrationTokens),
	})
	d.api = api
	// Its presence timers, armed from the stored presence, write to
	// the store: closed before it.
	d.closers.pushFunc("client API", api.Close)
	if d.appsvc, err = appservice.Open(db, d.accounts, appserviceSecrets{sec}); err != nil {
		return abort(err)
	}
	d.asQueue = appservice.NewQueue(d.appsvc, db, d.rooms, notifier)
	if err := d.asQueue.Start(); err != nil {
		return abort(err)
	}
	// Typing and read receipts, local and remote, reach the appservices
	// from the room engine (MSC2409).
	d.rooms.OnEphemeral(d.asQueue.Ephemeral)
	d.closers.pushFunc("appservice queue", func() { d.rooms.OnEphemeral(nil); d.asQueue.Stop() })
	api.SetAppservices(appserviceAPI{d.appsvc, d.asQueue})
	d.nearby = &nearbyDir{}
	api.SetNearby(d.nearby)
	mediaRepo, err := media.New(db, media.Config{Dir: filepath.Join(cfg.DataDir, "media"), ServerName: cfg.ServerName,
		MaxUploadBytes: cfg.MaxUploadBytes, QuotaBytes: cfg.MediaQuotaBytes, Previews: bool(cfg.URLPreviews),
		MaxPixels: cfg.MaxImagePixels, DecodeBudgetBytes: cfg.ThumbnailMemory})
	if err != nil {
		return abort(err)
	}
	api.SetMedia(mediaRepo)
	d.keys = e2ee.New(db, cfg.ServerName)
	api.SetKeys(d.keys)
	d.asQueue.SetE2EE(appserviceE2EE{d.keys, api, d.rooms})
	d.push = push.New(db, d.rooms, push.Options{})
	d.push.SetDesktop(desktop{}, push.DesktopOptions{Owner: d.isOwner, Active: api.ClientActive,
		Mode: func() string { return cfg.DesktopNotify }})
	d.push.Start()
	api.SetPush(d.push)
	d.search = search.New(db, d.rooms, notifier)
	d.search.Start()
	api.SetSearch(d.search)
	// Pushed after both started (nothing fails between): push stops
	// first, as it always has.
	d.closers.pushFunc("search", d.search.Stop)
	d.closers.pushFunc("push", d.push.Stop)
	// TURN before federation and delayed events, so that it stops after
	// them, as it always has; it depends on neither (startTURN reads only
	// the config).
	if d.turn, err = d.startTURN(sec); err != nil {
		return abort(err)
	}
	d.closers.pushFunc("TURN", d.turn.stop)
	api.SetTURN(d.turn)
	if err := d.startFederation(key, sec, notifier, api); err != nil {
		return abort(err)
	}
	d.closers.push("federation", func(ctx context.Context) error { d.fed.stop(ctx); return nil })
	// After federation, so that what came due while Hearth was stopped
	// goes out to other servers at once.
	d.delayed = delayed.New(db, d.rooms, delayed.Config{MaxDelay: time.Duration(cfg.DelayedMaxDelay) * time.Second})
	if err := d.delayed.Start(); err != nil {
		return abort(err)
	}
	d.closers.push("delayed events", func(context.Context) error { d.delayed.Close(); return nil })
	api.SetDelayed(d.delayed)
	if err := d.startCalls(); err != nil {
		return abort(err)
	}
	d.closers.pushFunc("calls", d.stopCalls) // hang-ups go out while the store is open
	ctl, err := d.startControl(sec, sec.Where(), warning)
	if err != nil {
		return abort(err)
	}
	d.closers.pushFunc("control socket", func() {
		if d.control != nil {
			d.control.Close()
		}
	})
	// The client API's presence timers again (closing twice is harmless):
	// they stop as soon as no client can sync any more, before the parts
	// above stop.
	d.closers.pushFunc("client API", api.Close)
	// Indexed now, not by the index's flush timer after ready.
	d.indexStartup()
	root := http.NewServeMux()
	root.Handle("/_hearth/", ctl)
	root.Handle("/", api)
	ln, err := net.Listen("tcp", cfg.ClientListen)
	if err != nil {
		return abort(fmt.Errorf("client listener: %w", err))
	}
	// Every client is on this computer, so one address: a total cap is
	// the only one that means anything here.
	limited := newLimitListener(ln, "client", d.limits.clientConns, 0)
	d.listener = limited
	base, stopRequests := context.WithCancel(context.Background())
	d.server = d.limits.server(root, limited)
	d.server.BaseContext = func(net.Listener) context.Context { return base }
	d.closers.push("client listener", func(ctx context.Context) error {
		d.server.Shutdown(ctx)
		d.server.Close()
		return nil
	})
	// LAN discovery starts before the idle step and before the listener
	// serves: its set-up (sockets, the interfaces read, the first
	// announcement) is start-up's cost, not the first idle minute's, and
	// its garbage goes in the idle step's collection. Nothing below fails
	// before its closer is pushed where Stop's order wants it.
	d.lanKey = key
	d.startDiscovery(cfg.LANDiscovery)
	// Idle before the first request can be answered: the collection and
	// the trim are start-up's cost, not the first idle minute's.
	d.closers.pushFunc("idle GC", theIdleGC.start())
	// Ending the requests' base context is what cuts /sync long polls
	// short at shutdown; http.Server.Shutdown alone would wait for them.
	d.closers.pushFunc("long polls", stopRequests)
	if serving != nil {
		serving(d)
	}
	go func() {
		if err := d.server.Serve(limited); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("client listener stopped", "err", err)
		}
	}()
	d.closers.pushFunc("LAN discovery", d.stopDiscovery) // the announcement withdrawn before the listeners close
	slog.Info("hearth is ready", "server_name", cfg.ServerName, "client_api", "http://"+ln.Addr().String(),
		"data_dir", cfg.DataDir, "key_id", key.ID)
	return d, nil
}

// serving, if set (by tests), sees the daemon as its client listener is
// about to serve: what the first request can find.
var serving func(*Daemon)

// StopRequested is closed when someone asked the daemon to stop through the
// control API; the command running the daemon then stops it as on SIGTERM.
func (d *Daemon) StopRequested() <-chan struct{} { return d.stopped }

func (d *Daemon) requestStop() { d.stopOnce.Do(func() { close(d.stopped) }) }

// Addr is the client listener's address.
func (d *Daemon) Addr() string { return d.listener.Addr().String() }

// Stop stops accepting, answers pending long polls at once, lets other
// requests finish, and closes the store after its queued writes: the
// parts stop in the reverse of the order Start started them (closers).
func (d *Daemon) Stop(ctx context.Context) error {
	return d.closers.close(ctx)
}

// firstStart creates the owner's account when the server has none and
// tells the person how to log in, once.
func (d *Daemon) firstStart(out io.Writer) error {
	users, err := d.accounts.List()
	if err != nil || len(users) > 0 {
		return err
	}
	name := ownerName()
	// Recorded as generated and unused: a daemon an installer or the tray
	// started has no one reading this banner, so the console's welcome
	// sets the first password instead (account.SetFirstPassword).
	password, err := d.accounts.CreateOwner(context.Background(), name)
	if err != nil {
		return fmt.Errorf("create owner account: %w", err)
	}
	// The owner installed Hearth to be found by the people nearby.
	if err := d.accounts.SetNearby(context.Background(), name, true); err != nil {
		return fmt.Errorf("announce the owner to people nearby: %w", err)
	}
	fmt.Fprintf(out, `
  Welcome to Hearth. Your Matrix account is ready:

      homeserver  http://%s
      user        %s
      password    %s

  This password is shown only once. Choose your own in the web console
  ('hearth open', until this one is used) or with 'hearth account passwd %s'.

`, d.cfg.ClientAddr(), d.accounts.UserID(name), password, name)
	fmt.Fprint(out, nameNotice(d.cfg))
	return nil
}

// nameNotice tells the person, at first start, what their server is
// called and what that means; a name Hearth chose comes with the one
// chance to choose another, since it is recorded for good.
func nameNotice(cfg Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  Your server is %s", cfg.ServerName)
	switch cfg.Federation {
	case FederationLAN:
		b.WriteString("; people on this network can reach it (federation = lan).\n")
	case FederationInternet:
		b.WriteString("; other servers on the internet can reach it (federation = internet).\n")
	default:
		b.WriteString("; it talks to no other server (federation = off).\n")
	}
	if cfg.serverNameDefault && strings.HasSuffix(cfg.ServerName, ".local") {
		b.WriteString(`  Hearth chose this name, and it is part of every user ID for good. A .local
  name is found by other Hearths nearby, never on the internet. To federate
  over the internet one day, a server needs a domain you own, chosen before
  its first start: stop Hearth now and start afresh with
      hearth run --data-dir <a new dir> --server-name example.org
`)
	}
	b.WriteString("\n")
	return b.String()
}

var notLocalpart = regexp.MustCompile(`[^a-z0-9._=\-/+]`)

// ownerName derives the owner's localpart from the OS account name.
func ownerName() string {
	u, err := user.Current()
	if err != nil {
		return "me"
	}
	name := u.Username
	if i := strings.LastIndexAny(name, `\`); i >= 0 {
		name = name[i+1:] // DOMAIN\user on Windows
	}
	name = notLocalpart.ReplaceAllString(strings.ToLower(name), "")
	if name == "" {
		return "me"
	}
	return name
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
