package matrix

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// presence is basic presence (Client-Server API §"Presence"). Each device
// says what it wants through /sync's set_presence (or PUT /presence); the
// user's presence is the most present state among the devices still
// syncing (online > unavailable > offline), as Synapse aggregates it, and
// only a change of that aggregate is stored, announced over federation and
// so wakes other users' long polls. An idle second device syncing with
// set_presence=unavailable therefore costs nothing while the first is
// online. When the user was last active is kept in memory and only read
// when an m.presence event is built, so refreshing it never wakes anyone.
type presence struct {
	accounts *account.Accounts
	rooms    roomEngine
	mu       sync.Mutex
	users    map[string]*userPresence // localpart → its devices
	timeout  time.Duration            // deviceTimeout, or the configured one
	// fed announces local users' presence to other servers and knows
	// theirs; nil while federation is off (set by SetFederation).
	fed Federation
	// appsvc hears of each change for the application services
	// (MSC2409); nil without any (set by SetAppservices).
	appsvc Appservices
	// closed stops the settling that runs outside requests (a request's
	// end, a device's expiry) once the store is about to close; background
	// counts those running.
	closed     bool
	background sync.WaitGroup
}

// deviceTimeout is how long a device keeps counting after its last request
// ended, unless Config.PresenceTimeout says otherwise: long enough to cover
// the gap between one /sync and the next, short enough that a closed
// client stops holding its user online (Synapse's SYNC_ONLINE_TIMEOUT is
// the same 30 s).
const deviceTimeout = 30 * time.Second

// userPresence is the in-memory presence of one local user.
type userPresence struct {
	devices    map[string]*devicePresence // device ID → what it last asked for
	lastActive time.Time                  // last request of a device asking to be online
	synced     time.Time                  // last request of any device
	// expiry re-aggregates when the next device stops counting, at
	// expiryAt or earlier: it is moved only to fire sooner, never later,
	// so a device's requests (a /sync every few milliseconds while
	// messages flow) do not stop and arm a timer each. Firing early costs
	// one settle, which arms it again for the device that counts longest
	// (aggregatePresence's next).
	expiry   *time.Timer
	expiryAt time.Time
	// store serialises reading and writing the stored state, so two
	// devices' requests cannot both store (and announce) the same change.
	store sync.Mutex
	// stored is the user's stored presence and status message, read once
	// and then kept (under store) as this type is its only writer: settle
	// runs twice per /sync, and reading the account record each time cost
	// a sixth of the daemon's CPU with 50 long-polling clients.
	stored *storedPresence
	// settled: the last settle left the stored presence equal to the
	// aggregate. A request of a device that already counts with the same
	// state then changes nothing a settle would look at, and skips it.
	settled atomic.Bool
}

// storedPresence is what the account record holds of a user's presence.
type storedPresence struct{ state, msg string }

// reread drops what settle remembers of a user's stored presence, for
// when the account record changed by another way (deactivation sets it
// offline).
func (p *presence) reread(localpart string) {
	p.mu.Lock()
	up := p.user(localpart)
	p.mu.Unlock()
	up.store.Lock()
	up.stored = nil
	up.settled.Store(false)
	up.store.Unlock()
}

// devicePresence is what one device last asked for.
type devicePresence struct {
	state    string
	inFlight int       // its requests still running (a /sync long poll counts while it waits)
	seen     time.Time // when its last request started or ended
}

// presenceRank orders states by how present they are.
func presenceRank(state string) int {
	switch state {
	case "online":
		return 2
	case "unavailable":
		return 1
	}
	return 0
}

// aggregatePresence returns the most present state among the devices that
// still count at now (a request in flight, or one that ended less than
// timeout ago), forgets the others, and says when the next counting device
// will stop counting (zero if none will without a new request).
func aggregatePresence(devices map[string]*devicePresence, now time.Time, timeout time.Duration) (state string, next time.Time) {
	state = "offline"
	for id, d := range devices {
		if d.inFlight == 0 {
			until := d.seen.Add(timeout)
			if !now.Before(until) {
				delete(devices, id)
				continue
			}
			if next.IsZero() || until.Before(next) {
				next = until
			}
		}
		if presenceRank(d.state) > presenceRank(state) {
			state = d.state
		}
	}
	return state, next
}

func newPresence(a *account.Accounts, r roomEngine, timeout time.Duration) *presence {
	if timeout <= 0 {
		timeout = deviceTimeout
	}
	p := &presence{accounts: a, rooms: r, users: map[string]*userPresence{}, timeout: timeout}
	p.expireStored()
	return p
}

// expireStored gives every user the stored state says is present one
// timeout to come back: after a restart no device of theirs is known, and
// without a request from one they would stay online for good.
func (p *presence) expireStored() {
	users, err := p.accounts.List()
	if err != nil {
		slog.Warn("presence: list users", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range users {
		if u.Presence == "" || u.Presence == "offline" {
			continue
		}
		lp := u.Localpart
		p.user(lp).armExpiry(p, lp, time.Now().Add(p.timeout))
	}
}

// user returns the in-memory presence of a local user; p.mu must be held.
func (p *presence) user(localpart string) *userPresence {
	up := p.users[localpart]
	if up == nil {
		up = &userPresence{devices: map[string]*devicePresence{}}
		p.users[localpart] = up
	}
	return up
}

// device records that the caller's device asks for state now (a request
// of the user's, and an active one if online) and returns its entry;
// p.mu must be held.
func (p *presence) device(c *caller, state string) *devicePresence {
	now := time.Now()
	up := p.user(c.Localpart)
	d := up.devices[c.DeviceID]
	if d == nil {
		d = &devicePresence{}
		up.devices[c.DeviceID] = d
	}
	d.state, d.seen = state, now
	up.synced = now
	if state == "online" {
		up.lastActive = now
	}
	return d
}

// touch records that a device is making a request (a /sync) that asks for
// state until the handler calls the done it returns, and stores the
// user's presence if the aggregate over their devices changed. done is
// when the device's 30 s begin; the handler defers it.
//
// done runs in the handler rather than from context.AfterFunc on the
// request's context: that started a goroutine per request to settle again,
// while a request's end changes no aggregate (the device keeps counting)
// and only needs the expiry timer armed, which it mostly is already.
func (p *presence) touch(ctx context.Context, c *caller, state string) (done func()) {
	p.mu.Lock()
	up := p.user(c.Localpart)
	prev := up.devices[c.DeviceID]
	unchanged := prev != nil && prev.state == state &&
		(prev.inFlight > 0 || time.Since(prev.seen) < p.timeout) && up.settled.Load()
	d := p.device(c, state)
	d.inFlight++
	p.mu.Unlock()
	if !unchanged {
		if err := p.settle(ctx, c.Localpart, nil); err != nil {
			slog.Debug("presence: store", "user", c.Localpart, "err", err)
		}
	}
	return func() {
		p.mu.Lock()
		d.inFlight--
		d.seen = time.Now()
		// The device stops counting at seen + timeout unless it comes back:
		// settle only if no timer will look at it by then.
		armed := d.inFlight > 0 || (up.expiry != nil && up.expiryAt.After(d.seen) &&
			!up.expiryAt.After(d.seen.Add(p.timeout)))
		p.mu.Unlock()
		if !armed {
			p.settleLater(c.Localpart)
		}
	}
}

// armExpiry makes sure the user's expiry timer fires at at or earlier;
// p.mu must be held.
func (up *userPresence) armExpiry(p *presence, localpart string, at time.Time) {
	if up.expiry != nil && up.expiryAt.After(time.Now()) && !up.expiryAt.After(at) {
		return
	}
	if up.expiry != nil {
		up.expiry.Stop()
	}
	up.expiryAt = at
	up.expiry = time.AfterFunc(time.Until(at), func() { p.settleLater(localpart) })
}

// settleLater settles outside any request, unless the API is closing.
func (p *presence) settleLater(localpart string) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.background.Add(1)
	p.mu.Unlock()
	defer p.background.Done()
	if err := p.settle(context.Background(), localpart, nil); err != nil {
		slog.Debug("presence: store", "user", localpart, "err", err)
	}
}

// close stops the expiry timers and waits for background settling, so
// nothing writes after the daemon closes the store.
func (p *presence) close() {
	p.mu.Lock()
	p.closed = true
	for _, up := range p.users {
		if up.expiry != nil {
			up.expiry.Stop()
		}
	}
	p.mu.Unlock()
	p.background.Wait()
}

// settle stores and announces the user's aggregate presence if it differs
// from the stored one (or statusMsg, when not nil, from the stored status
// message), and arms the timer that settles again when the next device
// stops counting.
func (p *presence) settle(ctx context.Context, localpart string, statusMsg *string) (err error) {
	p.mu.Lock()
	up := p.user(localpart)
	p.mu.Unlock()
	up.store.Lock()
	defer up.store.Unlock()
	defer func() { up.settled.Store(err == nil) }()

	p.mu.Lock()
	state, next := aggregatePresence(up.devices, time.Now(), p.timeout)
	// With no next (every device in a request, or none left) a timer
	// still armed is left to fire: stopping it here and arming it again
	// at the request's end was two timer operations per /sync.
	if !next.IsZero() && !p.closed {
		up.armExpiry(p, localpart, next)
	}
	p.mu.Unlock()

	if up.stored == nil {
		u, err := p.accounts.Get(localpart)
		if err != nil {
			return err
		}
		if u == nil {
			return matrixerr.NotFound("unknown user")
		}
		up.stored = &storedPresence{state: u.Presence, msg: u.StatusMsg}
		if up.stored.state == "" {
			up.stored.state = "offline"
		}
	}
	msg := up.stored.msg
	if statusMsg != nil {
		msg = *statusMsg
	}
	if up.stored.state == state && msg == up.stored.msg {
		return nil
	}
	if err := p.accounts.SetPresence(ctx, localpart, state, msg); err != nil {
		return err
	}
	up.stored = &storedPresence{state: state, msg: msg}
	p.announce(ctx, p.accounts.UserID(localpart), state, msg)
	return nil
}

// set is PUT /presence: the device's state is what it asks for (it counts
// like a /sync that just ended) and the status message is the user's.
func (p *presence) set(ctx context.Context, c *caller, state, statusMsg string) error {
	p.mu.Lock()
	p.device(c, state)
	p.mu.Unlock()
	return p.settle(ctx, c.Localpart, &statusMsg)
}

// announce sends a local user's new presence over federation
// (Server-Server API §"Presence") and to the application services; a
// failure costs only the update.
func (p *presence) announce(ctx context.Context, userID, state, statusMsg string) {
	if p.appsvc != nil {
		c := map[string]any{"presence": state, "last_active_ago": 0, "currently_active": state == "online"}
		if statusMsg != "" {
			c["status_msg"] = statusMsg
		}
		p.appsvc.Presence(context.WithoutCancel(ctx), userID, c)
	}
	if p.fed == nil {
		return
	}
	if err := p.fed.SendPresence(context.WithoutCancel(ctx), userID, state, statusMsg, 0, state == "online"); err != nil {
		slog.Info("presence: federation send failed", "user", userID, "err", err)
	}
}

func (s *Server) getPresence(w http.ResponseWriter, r *http.Request, c *caller) error {
	uid := r.PathValue("userId")
	lp := s.accounts.Localpart(uid)
	if lp != c.Localpart && !s.rooms.SharesRoom(c.UserID, uid) {
		return matrixerr.Forbidden("you do not share a room with this user")
	}
	// A local user's from the account, another server's user's from what
	// their server last sent.
	var remote map[string]json.RawMessage
	content := s.presence.userContent(uid, &remote)
	if content == nil {
		return matrixerr.NotFound("no presence known for this user")
	}
	matrixerr.WriteJSON(w, http.StatusOK, content)
	return nil
}

func (s *Server) putPresence(w http.ResponseWriter, r *http.Request, c *caller) error {
	if r.PathValue("userId") != c.UserID {
		return matrixerr.Forbidden("you may only set your own presence")
	}
	var req struct {
		Presence  string `json:"presence"`
		StatusMsg string `json:"status_msg"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Presence != "online" && req.Presence != "offline" && req.Presence != "unavailable" {
		return matrixerr.InvalidParam("presence must be online, offline or unavailable")
	}
	if err := s.presence.set(r.Context(), c, req.Presence, req.StatusMsg); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// Close stops presence's timers and waits for its background writes, and
// stops preparing /sync responses; the daemon calls it after the listener
// stops and before the store closes.
func (s *Server) Close() {
	if es, ok := s.rooms.(earlySyncer); ok {
		es.SetEarlySync(nil)
	}
	s.presence.close()
}

// clientActiveFor is how recently a client must have synced for the user
// to count as at a client.
const clientActiveFor = 60 * time.Second

// ClientActive reports whether one of the user's clients synced within the
// last minute: a client in use shows its own notifications, so the daemon's
// desktop notifications stay quiet (and so do phones' through pushers).
func (s *Server) ClientActive(userID string) bool {
	s.presence.mu.Lock()
	defer s.presence.mu.Unlock()
	up := s.presence.users[s.accounts.Localpart(userID)]
	return up != nil && time.Since(up.synced) < clientActiveFor
}
