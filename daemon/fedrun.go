package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/federation"
	"github.com/hearth-chat/hearth/federation/queue"
	"github.com/hearth-chat/hearth/federation/resolve"
	"github.com/hearth-chat/hearth/federation/serverkeys"
	"github.com/hearth-chat/hearth/internal/netmon"
	"github.com/hearth-chat/hearth/internal/room"
)

// fed is the running federation side: the TLS listener of the
// Server-Server API, the outbound queue, and what a laptop's federation
// does when the network monitor reports sleep or new networks (nudge the
// other servers, check reachability again).
type fed struct {
	service   *federation.Service
	queue     *queue.Queue
	resolver  *resolve.Resolver
	rooms     *room.Engine
	keyClient gomatrixserverlib.KeyClient
	notaries  []serverkeys.Notary
	keys      *serverkeys.Keys // other servers' keys, for LAN-first routing of public names (discovery.go)
	addr      string
	tlsConf   *tls.Config
	limits    netLimits // deadlines and connection caps (listen.go)
	// mode is federation = lan or internet. In lan mode only loopback and
	// this machine's networks may connect (lanlisten.go), and when addr
	// is the default and its port is taken, any free port will do: LAN
	// peers learn the port from the announcement.
	mode        string
	defaultAddr bool
	// certSPKI is the SHA-256 of the listener certificate's public key,
	// which the LAN announcement binds to the signing key (internal/secrets/tlscert.go).
	certSPKI [32]byte
	// net reports network changes and waking from sleep; shared with
	// discovery (one netlink socket). Nil: a monitor of its own.
	net *netmon.Monitor

	mu       sync.Mutex
	server   *http.Server
	listener net.Listener
	paused   bool
	cancel   context.CancelFunc // ends the watcher
	done     chan struct{}
}

// start opens the listener, starts the queue and the watcher.
func (f *fed) start() error {
	if err := f.listen(); err != nil {
		return err
	}
	f.queue.Start()
	f.wake("start")
	if f.net == nil {
		f.net = netmon.New()
	}
	changes, unsubscribe := f.net.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan struct{})
	go func() {
		defer close(f.done)
		defer unsubscribe()
		f.watch(ctx, changes)
	}()
	return nil
}

func (f *fed) listen() error {
	f.mu.Lock()
	mode, addr, defaultAddr := f.mode, f.addr, f.defaultAddr
	f.mu.Unlock()
	ln, err := net.Listen("tcp", addr)
	if err != nil && mode == FederationLAN && defaultAddr {
		// Another Hearth (another user of this machine) may hold 8448.
		// Keep the port once chosen, so a pause and resume announces the same.
		slog.Warn("federation: the default port is taken; listening on another one for the LAN", "addr", addr, "err", err)
		if ln, err = net.Listen("tcp", ":0"); err == nil {
			f.mu.Lock()
			f.addr, f.defaultAddr = ln.Addr().String(), false
			f.mu.Unlock()
		}
	}
	if err != nil {
		return fmt.Errorf("federation listener: %w", err)
	}
	if mode == FederationLAN {
		ln = newLANListener(ln, nil)
	}
	// Anyone on the network can connect here: cap connections per
	// address and in total, so no one server (or one attacker) holds the
	// descriptors the client listener needs.
	limited := newLimitListener(ln, "federation", f.limits.fedConns, f.limits.fedPerAddr)
	srv := f.limits.server(f.service.Handler(), limited)
	srv.TLSConfig = f.tlsConf
	go func() {
		if err := srv.ServeTLS(limited, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("federation listener stopped", "err", err)
		}
	}()
	f.mu.Lock()
	f.server, f.listener = srv, limited
	f.mu.Unlock()
	return nil
}

// running reports whether the listener and queue are up: federation is
// neither paused nor switched off. f.mu must be held.
func (f *fed) running() bool { return !f.paused && f.mode != FederationOff }

// stop stops accepting, then the queue; what it had not sent stays queued
// in the store for the next start.
func (f *fed) stop(ctx context.Context) {
	if f == nil {
		return
	}
	f.cancel()
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running() {
		f.server.Shutdown(ctx)
		f.server.Close()
		f.queue.Stop()
	}
}

// Pause closes the listener and stops sending until Resume; nothing is
// lost: the queue keeps filling in the store.
func (f *fed) Pause() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused {
		return
	}
	if f.running() {
		f.server.Close()
		f.queue.Stop()
	}
	f.paused = true
	slog.Info("federation paused")
}

// Resume undoes Pause and tells the other servers this one is back.
func (f *fed) Resume() error {
	f.mu.Lock()
	if !f.paused {
		f.mu.Unlock()
		return nil
	}
	off := f.mode == FederationOff
	f.mu.Unlock()
	if !off {
		if err := f.listen(); err != nil {
			return err
		}
		f.queue.Start()
	}
	f.mu.Lock()
	f.paused = false
	f.mu.Unlock()
	f.wake("resume")
	slog.Info("federation resumed")
	return nil
}

// Paused reports whether federation is paused.
func (f *fed) Paused() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused
}

// Mode is the federation mode in force: lan, internet or off.
func (f *fed) Mode() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mode
}

// setMode switches between lan, internet and off without a restart. The
// certificate is the same in every mode (internet needs tls_cert, which
// lan then uses too), so switching is reopening the listener with or
// without the LAN filter; off closes it and stops the queue, like a
// pause, and switching on again resumes and nudges the other servers.
// While paused only the mode changes; Resume opens what it says.
func (f *fed) setMode(mode string) error {
	f.mu.Lock()
	if mode == f.mode {
		f.mu.Unlock()
		return nil
	}
	wasRunning, wasOff := f.running(), f.mode == FederationOff
	if wasRunning {
		f.server.Close()
		if mode == FederationOff {
			f.queue.Stop()
		}
	}
	f.mode = mode
	paused := f.paused
	f.mu.Unlock()
	slog.Info("federation mode changed", "mode", mode)
	if mode == FederationOff || paused {
		return nil
	}
	if err := f.listen(); err != nil {
		// Nothing listens now: say so in the mode rather than claim one.
		f.mu.Lock()
		if wasRunning {
			f.queue.Stop()
		}
		f.mode = FederationOff
		f.mu.Unlock()
		return err
	}
	if wasOff {
		f.queue.Start()
		f.wake("federation switched on")
	}
	return nil
}

// wake ends every back-off and sends a transaction to each server this
// one shares a room with, so that their back-off towards this server ends
// too and what they queued arrives within seconds (the receiving side
// wakes its queue for any server that sends it a request).
func (f *fed) wake(reason string) {
	f.mu.Lock()
	running := f.running()
	f.mu.Unlock()
	if !running {
		return
	}
	f.resolver.Forget()
	f.queue.WakeAll()
	if peers := f.rooms.ServersSharingRooms(); len(peers) > 0 {
		f.queue.Nudge(peers)
		slog.Info("federation: nudged the servers this one shares rooms with", "reason", reason, "servers", len(peers))
	}
}

// recheckEvery is how often the reachability self-check runs when
// nothing happens on the network: a timer that long costs nothing while
// it waits.
const recheckEvery = 6 * time.Hour

// watch nudges on waking and network changes, and re-runs the
// reachability self-check after those and every recheckEvery. It wakes
// only when the monitor reports something: nothing here ticks.
func (f *fed) watch(ctx context.Context, changes <-chan netmon.Change) {
	f.checkReachability(ctx)
	recheck := time.NewTimer(recheckEvery)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-changes:
			f.wake(c.String())
			f.checkReachability(ctx)
			recheck.Reset(recheckEvery)
		case <-recheck.C:
			f.checkReachability(ctx)
			recheck.Reset(recheckEvery)
		}
	}
}

// checkReachability runs the self-check through the first trusted notary
// and logs the answer; without a notary there is nothing to ask.
func (f *fed) checkReachability(ctx context.Context) {
	f.mu.Lock()
	running := f.running()
	f.mu.Unlock()
	if len(f.notaries) == 0 || !running {
		return
	}
	r := f.service.CheckReachable(ctx, f.keyClient, f.notaries[0].ServerName)
	if r.Reachable != nil && *r.Reachable {
		slog.Info("federation: reachable from other servers", "checked_via", r.Via)
		return
	}
	slog.Warn("federation: other servers cannot reach this one; see docs/federation.md for ways to become reachable",
		"checked_via", r.Via, "err", r.Error)
}
