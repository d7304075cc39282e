// Package agent is the daemon's own WebRTC call party (Client-Server API
// §"Voice over IP", version "1"): the echo test user, which answers any
// call in a room it is in and sends the caller's audio and video back, and
// voicemail, which answers a 1:1 call to the owner that none of their
// devices answered, plays a greeting, records the caller and posts the
// recording into the room as a voice message.
//
// It follows the stream like push does (woken by the notifier, never
// polling) and sends its events through the room engine. It never calls
// anyone and keeps no media or keys after a hang-up but the voicemail
// file. In encrypted rooms its parties are E2EE devices of their own
// (crypto.go): they decrypt the call events shared with them and encrypt
// what they send.
package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/internal/room"
)

// Rooms is what the agent needs of the room engine (*room.Engine).
type Rooms interface {
	Pos() (uint64, uint64)
	Wait(ctx context.Context, pos, ephemeral uint64) error
	PushEventsOfType(from, to uint64, wanted func(evType string) bool, fn func(*room.PushEvent) error) error
	Send(ctx context.Context, req room.SendRequest) (string, error)
	ChangeMembership(ctx context.Context, req room.MembershipRequest) (string, error)
	HasLocalJoined(roomID string) bool
	Memberships(userID string) ([]room.Membership, error)
}

// RemoteJoiner joins a local user invited to a room no local user is in,
// through the inviting server (the daemon implements it with the
// federation join the client API uses; calls never imports federation).
type RemoteJoiner interface {
	JoinRemote(ctx context.Context, userID, roomID string) error
}

// Party is a local user and the device the agent speaks as: its device ID
// is the party_id of every call event it sends.
type Party struct {
	UserID   string
	DeviceID string
	// Crypto is the device's end-to-end encryption (nil: none; the party
	// then takes no part in encrypted rooms).
	Crypto Crypto
}

// Config says who the agent is and how it bounds its calls. Zero values
// take the defaults in withDefaults.
type Config struct {
	// Echo is the echo test user; its UserID empty turns echo off.
	Echo Party
	// Owner is the owner with the voicemail device; UserID empty turns
	// voicemail off.
	Owner Party
	// VoicemailAfter is how long an unanswered call rings before
	// voicemail answers (default 20 s; the invite's lifetime caps it).
	VoicemailAfter time.Duration
	// VoicemailMax is the longest recording (default 120 s).
	VoicemailMax time.Duration
	// EchoMax is the longest echo call (default 10 min).
	EchoMax time.Duration
	// ConnectTimeout is how long an answered call may take to connect
	// its media (default 15 s); then the agent hangs up (ice_timeout).
	ConnectTimeout time.Duration
	// MaxCalls bounds the agent's calls at once, ringing voicemail
	// included (default 8); MaxPerRoom and MaxPerCaller bound one room's
	// and one caller's (default 2). An invite over a bound is ignored.
	MaxCalls, MaxPerRoom, MaxPerCaller int
	// ICEServers returns the STUN/TURN servers for a call of a party (the built-in
	// TURN relay's); nil means host candidates only.
	ICEServers func(userID string) []webrtc.ICEServer
	// HostIP says which local addresses may be offered as host
	// candidates: the interfaces the daemon serves. nil allows all.
	HostIP func(net.IP) bool
	// Encrypted says whether a room has m.room.encryption: there a party
	// with Crypto encrypts what it sends (nil: no room is).
	Encrypted func(roomID string) bool
	Logger    *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.VoicemailAfter <= 0 {
		c.VoicemailAfter = 20 * time.Second
	}
	if c.VoicemailMax <= 0 {
		c.VoicemailMax = 120 * time.Second
	}
	if c.EchoMax <= 0 {
		c.EchoMax = 10 * time.Minute
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 15 * time.Second
	}
	if c.MaxCalls <= 0 {
		c.MaxCalls = 8
	}
	if c.MaxPerRoom <= 0 {
		c.MaxPerRoom = 2
	}
	if c.MaxPerCaller <= 0 {
		c.MaxPerCaller = 2
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Agent is the call agent of one homeserver.
type Agent struct {
	cfg    Config
	rooms  Rooms
	joiner RemoteJoiner
	vm     *Voicemail // nil: voicemail off
	api    *webrtc.API
	log    *slog.Logger

	mu        sync.Mutex
	calls     map[string]*call // by callKey
	perRoom   map[string]int
	perCaller map[string]int
	joining   map[string]bool     // rooms echo is joining
	tried     map[string]uint64   // remote invites to echo tried, by room: the invite's position
	decrypt   chan encryptedEvent // encrypted events to decrypt, in order (crypto.go)
	dropping  atomic.Bool         // the decrypt queue is full: events are being dropped

	cancel context.CancelFunc
	wg     sync.WaitGroup // the follower, every call and every join
	ctx    context.Context
	// followed is the stream position handled so far (tests wait on it).
	followed atomic.Uint64
}

// New returns an agent; Start runs it. joiner may be nil (echo then joins
// only rooms a local user is in).
func New(rooms Rooms, joiner RemoteJoiner, cfg Config) *Agent {
	cfg = cfg.withDefaults()
	a := &Agent{cfg: cfg, rooms: rooms, joiner: joiner, log: cfg.Logger,
		calls: map[string]*call{}, perRoom: map[string]int{}, perCaller: map[string]int{}, joining: map[string]bool{},
		tried: map[string]uint64{}, decrypt: make(chan encryptedEvent, maxEncryptedQueue)}
	a.api = newAPI(cfg.HostIP)
	return a
}

// SetVoicemail turns voicemail on with what it needs to play, record,
// store and tell; call it before Start.
func (a *Agent) SetVoicemail(vm *Voicemail) { a.vm = vm }

// Start follows the stream from the current position: calls are live
// things, an invite from before a start is not answered.
func (a *Agent) Start() {
	a.ctx, a.cancel = context.WithCancel(context.Background())
	pos, _ := a.rooms.Pos()
	a.followed.Store(pos)
	if a.cfg.Echo.Crypto != nil || a.cfg.Owner.Crypto != nil {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.decryptor(a.ctx) }()
	}
	for _, c := range []Crypto{a.cfg.Echo.Crypto, a.cfg.Owner.Crypto} {
		if c != nil {
			a.wg.Add(1)
			go func() { defer a.wg.Done(); c.Run(a.ctx) }()
		}
	}
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.follow(a.ctx, pos) }()
}

// Stop hangs up every call and waits until their resources are released.
func (a *Agent) Stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.wg.Wait()
}

// Active is the number of calls the agent is in or ringing for.
func (a *Agent) Active() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls)
}

func (a *Agent) follow(ctx context.Context, pos uint64) {
	for {
		cur, eph := a.rooms.Pos()
		if cur > pos {
			err := a.rooms.PushEventsOfType(pos, cur, handled, func(pe *room.PushEvent) error {
				a.handle(pe)
				return nil
			})
			if err != nil && ctx.Err() == nil {
				a.log.Error("calls: read events", "from", pos, "err", err)
			}
			pos = cur
			a.remoteInvites()
			a.followed.Store(pos)
			continue
		}
		if err := a.rooms.Wait(ctx, cur, eph); err != nil {
			return
		}
	}
}

// handled says whether handle acts on events of type typ; the follower
// skips the others unread (most of a busy daemon's events are messages).
func handled(typ string) bool {
	return typ == "m.room.member" || typ == evEncrypted || isCallEvent(typ)
}

// handle looks at one new room event; handled names the types it acts on.
func (a *Agent) handle(pe *room.PushEvent) {
	ev := &pe.Event
	switch {
	case ev.Type == "m.room.member":
		a.memberEvent(pe)
	case ev.Type == evEncrypted:
		a.encrypted(pe)
	case isCallEvent(ev.Type):
		if a.isAgent(ev.Sender, ev.Content) {
			return // our own answer, candidates or hang-up
		}
		c, err := parseCall(ev.Content)
		if err != nil {
			return
		}
		if ev.Type == evInvite {
			a.invite(pe, c)
			return
		}
		a.deliver(pe.RoomID, ev.Type, ev.Sender, c)
	}
}

func isCallEvent(typ string) bool { return strings.HasPrefix(typ, "m.call.") }

// isAgent says whether an event was sent by the agent itself.
func (a *Agent) isAgent(sender string, content json.RawMessage) bool {
	if sender == a.cfg.Echo.UserID && sender != "" {
		return true
	}
	if sender == a.cfg.Owner.UserID && sender != "" {
		var c struct {
			PartyID string `json:"party_id"`
		}
		json.Unmarshal(content, &c)
		return c.PartyID == a.cfg.Owner.DeviceID
	}
	return false
}

// memberEvent joins echo to a room it is invited to.
func (a *Agent) memberEvent(pe *room.PushEvent) {
	ev := &pe.Event
	if a.cfg.Echo.UserID == "" || ev.StateKey == nil || *ev.StateKey != a.cfg.Echo.UserID {
		return
	}
	var m struct {
		Membership string `json:"membership"`
	}
	if json.Unmarshal(ev.Content, &m) != nil || m.Membership != "invite" {
		return
	}
	a.joinEcho(pe.RoomID)
}

// echoHello is what echo says in a room it joined.
const echoHello = "Echo test: call me to test your microphone, camera and connection. I answer at once and send back what I receive, for up to 10 minutes."

// remoteInvites joins echo to the rooms of other servers it was invited
// to: such an invite arrives over federation as an outlier, which the
// timeline (and so the stream's events) does not carry, but which sets
// echo's membership. Each invite is tried once.
func (a *Agent) remoteInvites() {
	if a.cfg.Echo.UserID == "" || a.joiner == nil {
		return
	}
	ms, err := a.rooms.Memberships(a.cfg.Echo.UserID)
	if err != nil {
		return
	}
	for _, m := range ms {
		if m.Membership != "invite" || a.tried[m.RoomID] == m.Pos {
			continue
		}
		a.tried[m.RoomID] = m.Pos
		a.joinEcho(m.RoomID)
	}
}

// joinEcho joins the echo user to roomID, through the room engine when a
// local user is in the room, else through the inviter's server.
func (a *Agent) joinEcho(roomID string) {
	a.mu.Lock()
	if a.joining[roomID] || a.ctx.Err() != nil {
		a.mu.Unlock()
		return
	}
	a.joining[roomID] = true
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() { a.mu.Lock(); delete(a.joining, roomID); a.mu.Unlock() }()
		ctx, cancel := context.WithTimeout(a.ctx, time.Minute)
		defer cancel()
		// A remote join can race the inviting server, which stores its
		// invite only after this server countersigned it: a refused join
		// is tried again a few times.
		var err error
		for wait := 250 * time.Millisecond; ; wait *= 2 {
			if a.rooms.HasLocalJoined(roomID) || a.joiner == nil {
				_, err = a.rooms.ChangeMembership(ctx, room.MembershipRequest{Sender: a.cfg.Echo.UserID, RoomID: roomID,
					Target: a.cfg.Echo.UserID, Membership: "join", Profile: room.Profile{DisplayName: "Echo test"}})
			} else {
				err = a.joiner.JoinRemote(ctx, a.cfg.Echo.UserID, roomID)
			}
			if err == nil || wait > 4*time.Second {
				break
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		if err != nil {
			a.log.Warn("calls: echo could not join", "room", roomID, "err", err)
			return
		}
		// Say what echo is for; it also tells the inviter that this
		// server now has the room, so a call placed now reaches echo.
		content, _ := json.Marshal(map[string]any{"msgtype": "m.notice", "body": echoHello})
		if _, err := a.sendAs(ctx, a.cfg.Echo, roomID, "m.room.message", content, "hearth-echo-hello-"+roomID); err != nil {
			a.log.Warn("calls: echo could not say hello", "room", roomID, "err", err)
		}
	}()
}
