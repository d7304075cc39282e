package e2e

import (
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// testBridge is a mautrix-go appservice registered with a real hearth
// through `hearth appservice add`, as a bridge's owner would do it.
type testBridge struct {
	as   *appservice.AppService
	reg  *appservice.Registration
	file string
}

// newTestBridge writes a registration for id (users @<id>_…, exclusive)
// and starts the appservice's HTTP server on loopback.
func newTestBridge(t *testing.T, d *Daemon, name string) *testBridge {
	t.Helper()
	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	serverName := d.ServerName()
	p, _ := strconv.Atoi(port)
	reg := appservice.CreateRegistration()
	reg.ID = name
	reg.URL = "http://" + addr
	reg.SenderLocalpart = name + "bot"
	f := false
	reg.RateLimited = &f
	reg.EphemeralEvents = true
	reg.MSC4190 = true
	reg.Namespaces.UserIDs = appservice.NamespaceList{{Regex: "^@" + name + "_.+:" + strings.ReplaceAll(serverName, ".", `\.`) + "$", Exclusive: true}}
	reg.Namespaces.RoomAliases = appservice.NamespaceList{{Regex: "^#" + name + "_.+:" + strings.ReplaceAll(serverName, ".", `\.`) + "$", Exclusive: true}}
	file := filepath.Join(t.TempDir(), name+".yaml")
	if err := reg.Save(file); err != nil {
		t.Fatal(err)
	}
	// mautrix v0.26.0's NewMemoryStateStore leaves JoinRules nil, so the
	// first m.room.join_rules in a transaction panics its handler (and
	// the transaction is retried for ever): give it the map.
	st := mautrix.NewMemoryStateStore().(*mautrix.MemoryStateStore)
	st.JoinRules = map[id.RoomID]*event.JoinRulesEventContent{}
	as, err := appservice.CreateFull(appservice.CreateOpts{Registration: reg, HomeserverDomain: serverName,
		HomeserverURL: d.URL(), HostConfig: appservice.HostConfig{Hostname: host, Port: uint16(p)}, StateStore: st})
	if err != nil {
		t.Fatal(err)
	}
	go as.Start()
	t.Cleanup(as.Stop)
	return &testBridge{as: as, reg: reg, file: file}
}

func (b *testBridge) add(t *testing.T, d *Daemon) {
	t.Helper()
	code, stdout, stderr := runHearth(t, "appservice", "add", b.file, "--data-dir", d.DataDir, "--server-name", serverName)
	if code != 0 {
		t.Fatalf("appservice add: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// waitEvent returns the next event the appservice received that match
// accepts, skipping others; the test fails if none comes within 30 s.
func (b *testBridge) waitEvent(t *testing.T, what string, match func(*event.Event) bool) *event.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-b.as.Events:
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("the appservice did not receive %s", what)
		}
	}
}

// pingUntilUp pings the server from the appservice until the server's
// ping back reaches it: its HTTP server has just been started.
func (b *testBridge) pingUntilUp(t *testing.T) {
	t.Helper()
	var err error
	for range 100 {
		if _, err = b.as.BotIntent().AppservicePing(ctx(t), b.reg.ID, "up"); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the appservice never answered the server's ping: %v", err)
}

// bridgeQueries is the bridge's answer to hearth's user and alias
// queries: it makes the ghost (with a display name) or the portal room.
type bridgeQueries struct {
	t  *testing.T
	as *appservice.AppService
}

func (q bridgeQueries) QueryUser(userID id.UserID) bool {
	intent := q.as.Intent(userID)
	if err := intent.EnsureRegistered(q.t.Context()); err != nil {
		q.t.Errorf("bridge: register %s: %v", userID, err)
		return false
	}
	if err := intent.SetDisplayName(q.t.Context(), "Newbie (bridged)"); err != nil {
		q.t.Errorf("bridge: display name of %s: %v", userID, err)
		return false
	}
	return true
}

func (q bridgeQueries) QueryAlias(alias id.RoomAlias) bool {
	name := strings.TrimPrefix(strings.Split(alias.String(), ":")[0], "#")
	_, err := q.as.BotIntent().CreateRoom(q.t.Context(), &mautrix.ReqCreateRoom{RoomAliasName: name, Preset: "public_chat"})
	if err != nil {
		q.t.Errorf("bridge: portal for %s: %v", alias, err)
	}
	return err == nil
}

func matrixCode(err error) string {
	var he mautrix.HTTPError
	if errors.As(err, &he) && he.RespError != nil {
		return he.RespError.ErrCode
	}
	return ""
}

// TestAppserviceBridge: a mautrix-go appservice registered through the
// CLI pings the server (which pings it back with the hs_token mautrix
// checks), registers a ghost with m.login.application_service, joins it
// to a human's room and sends as it with a massaged timestamp; ordinary
// users cannot take its exclusive names, forged tokens are refused, and
// all of it survives a restart of hearth.
func TestAppserviceBridge(t *testing.T) {
	d := StartDaemon(t)
	alice := d.Register("alice")
	b := newTestBridge(t, d, "bridge")
	b.add(t, d)

	bot := b.as.BotIntent()
	if _, err := bot.AppservicePing(ctx(t), "bridge", "ping-1"); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if _, err := bot.AppservicePing(ctx(t), "other", "ping-2"); matrixCode(err) != "M_FORBIDDEN" {
		t.Fatalf("ping of another appservice: %v", err)
	}

	ghost := b.as.Intent(id.NewUserID("bridge_anna", serverName))
	if err := ghost.EnsureRegistered(ctx(t)); err != nil {
		t.Fatalf("register ghost: %v", err)
	}
	if err := ghost.SetDisplayName(ctx(t), "Anna (bridged)"); err != nil {
		t.Fatalf("ghost display name: %v", err)
	}
	resp, err := alice.CreateRoom(ctx(t), &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{ghost.UserID}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ghost.JoinRoomByID(ctx(t), resp.RoomID); err != nil {
		t.Fatalf("ghost join: %v", err)
	}
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	sent, err := ghost.SendMessageEvent(ctx(t), resp.RoomID, event.EventMessage,
		map[string]any{"msgtype": "m.text", "body": "from the other network"}, mautrix.ReqSendEvent{Timestamp: past})
	if err != nil {
		t.Fatalf("ghost send: %v", err)
	}
	ev, err := alice.GetEvent(ctx(t), resp.RoomID, sent.EventID)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Sender != ghost.UserID || ev.Timestamp != past {
		t.Fatalf("alice sees sender %s ts %d, want %s %d", ev.Sender, ev.Timestamp, ghost.UserID, past)
	}

	// A human's messages, typing and receipts reach the appservice in
	// transactions (and the ghost's own message, which it ignores).
	hello, err := alice.SendText(ctx(t), resp.RoomID, "hello bridge")
	if err != nil {
		t.Fatal(err)
	}
	b.waitEvent(t, "alice's message", func(ev *event.Event) bool {
		return ev.Type == event.EventMessage && ev.Sender == alice.UserID && ev.ID == hello.EventID && ev.RoomID == resp.RoomID
	})
	if _, err := alice.UserTyping(ctx(t), resp.RoomID, true, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	b.waitEvent(t, "alice typing", func(ev *event.Event) bool {
		return ev.Type == event.EphemeralEventTyping && ev.RoomID == resp.RoomID &&
			len(ev.Content.AsTyping().UserIDs) == 1 && ev.Content.AsTyping().UserIDs[0] == alice.UserID
	})
	if err := alice.SendReceipt(ctx(t), resp.RoomID, sent.EventID, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	b.waitEvent(t, "alice's receipt", func(ev *event.Event) bool {
		if ev.Type != event.EphemeralEventReceipt || ev.RoomID != resp.RoomID {
			return false
		}
		_, ok := (*ev.Content.AsReceipt())[sent.EventID][event.ReceiptTypeRead][alice.UserID]
		return ok
	})

	// The appservice goes away; what alice says meanwhile waits in the
	// queue and arrives once, in order, when it is back and pings.
	b.as.Stop()
	for i := 1; i <= 3; i++ {
		if _, err := alice.SendText(ctx(t), resp.RoomID, "while away "+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	go b.as.Start()
	b.pingUntilUp(t)
	if _, err := alice.SendText(ctx(t), resp.RoomID, "after"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) == 0 || got[len(got)-1] != "after" {
		ev := b.waitEvent(t, "alice's messages after the appservice came back", func(ev *event.Event) bool {
			return ev.Type == event.EventMessage && ev.Sender == alice.UserID
		})
		got = append(got, ev.Content.AsMessage().Body)
	}
	if strings.Join(got, "|") != "while away 1|while away 2|while away 3|after" {
		t.Fatalf("after the appservice came back it got %q", got)
	}

	// MSC4190: the bridge makes a device for its ghost (as mautrix's
	// encrypted bridges do) and acts as it.
	ghostDev := b.as.NewMautrixClient(ghost.UserID)
	if err := ghostDev.CreateDeviceMSC4190(ctx(t), "", "Bridge device"); err != nil {
		t.Fatalf("MSC4190 device: %v", err)
	}
	if who, err := ghostDev.Whoami(ctx(t)); err != nil || who.DeviceID != ghostDev.DeviceID {
		t.Fatalf("whoami as the ghost's device: %+v %v", who, err)
	}

	// A human's to-device message to the ghost's device arrives in a
	// transaction (MSC4203): the ghost never syncs.
	_, err = alice.SendToDevice(ctx(t), event.NewEventType("org.example.hello"), &mautrix.ReqSendToDevice{
		Messages: map[id.UserID]map[id.DeviceID]*event.Content{ghost.UserID: {ghostDev.DeviceID: {Raw: map[string]any{"hi": "ghost"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-b.as.ToDeviceEvents:
		if ev.Sender != alice.UserID || ev.ToUserID != ghost.UserID || ev.ToDeviceID != ghostDev.DeviceID || ev.Type.Type != "org.example.hello" {
			t.Fatalf("to-device in a transaction: %+v", ev)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the appservice did not receive the to-device message")
	}

	// Queries: a human invites a ghost that does not exist yet, and
	// resolves a portal alias nobody made: hearth asks the bridge, which
	// makes them; the invite carries the ghost's display name.
	b.as.QueryHandler = bridgeQueries{t: t, as: b.as}
	newbie := id.NewUserID("bridge_newbie", serverName)
	if _, err := alice.InviteUser(ctx(t), resp.RoomID, &mautrix.ReqInviteUser{UserID: newbie}); err != nil {
		t.Fatalf("invite a ghost made on demand: %v", err)
	}
	var member event.MemberEventContent
	if err := alice.StateEvent(ctx(t), resp.RoomID, event.StateMember, newbie.String(), &member); err != nil {
		t.Fatal(err)
	}
	if member.Membership != event.MembershipInvite || member.Displayname != "Newbie (bridged)" {
		t.Fatalf("the ghost's invite: %+v", member)
	}
	portal, err := alice.ResolveAlias(ctx(t), id.RoomAlias("#bridge_lobby:"+serverName))
	if err != nil || portal.RoomID == "" {
		t.Fatalf("portal alias made on demand: %v %v", portal, err)
	}
	// The portal's creation (the bot's events) went through too: what
	// alice says next still arrives.
	next, err := alice.SendText(ctx(t), resp.RoomID, "after the portal")
	if err != nil {
		t.Fatal(err)
	}
	b.waitEvent(t, "a message after the portal's creation", func(ev *event.Event) bool { return ev.ID == next.EventID })

	// Exclusive namespace: a person cannot register a ghost's name.
	_, err = d.Client("", "").RegisterDummy(ctx(t), &mautrix.ReqRegister{Username: "bridge_bob", Password: "long enough password"})
	if matrixCode(err) != "M_EXCLUSIVE" {
		t.Fatalf("ordinary registration of a namespaced name: %v", err)
	}
	// The appservice may act only as its own users.
	asAlice := b.as.Client(alice.UserID)
	if _, err := asAlice.Whoami(ctx(t)); matrixCode(err) != "M_FORBIDDEN" {
		t.Fatalf("identity assertion outside the namespace: %v", err)
	}
	if err := b.as.Intent(id.NewUserID("alice_x", serverName)).Register(ctx(t)); matrixCode(err) != "M_EXCLUSIVE" {
		t.Fatalf("appservice registering outside its namespace: %v", err)
	}
	forged := d.Client(ghost.UserID, "forged-"+b.reg.AppToken)
	forged.SetAppServiceUserID = true
	if _, err := forged.Whoami(ctx(t)); matrixCode(err) != "M_UNKNOWN_TOKEN" {
		t.Fatalf("forged as_token: %v", err)
	}

	// A second bridge whose appservice expects another hs_token than the
	// one registered: mautrix refuses hearth's ping, and hearth says so.
	b2 := newTestBridge(t, d, "other")
	b2.add(t, d)
	b2.as.Registration.ServerToken = "not-what-hearth-sends"
	if _, err := b2.as.BotIntent().AppservicePing(ctx(t), "other", "p"); matrixCode(err) != "M_BAD_STATUS" {
		t.Fatalf("ping refused by the appservice: %v", err)
	}

	code, stdout, stderr := runHearth(t, "appservice", "list", "--data-dir", d.DataDir, "--server-name", serverName)
	if code != 0 || !strings.Contains(stdout, "bridge\t@bridgebot:"+serverName) || !strings.Contains(stdout, "last ok") ||
		!strings.Contains(stdout, "other\t") || !strings.Contains(stdout, "last error") {
		t.Fatalf("appservice list: exit %d\n%s%s", code, stdout, stderr)
	}

	// The registrations and the ghost survive a restart.
	d.Restart()
	who, err := ghost.Whoami(ctx(t))
	if err != nil || who.UserID != ghost.UserID {
		t.Fatalf("ghost after restart: %v %v", who, err)
	}
	if _, err := bot.AppservicePing(ctx(t), "bridge", "ping-3"); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}

	code, stdout, stderr = runHearth(t, "appservice", "remove", "other", "--data-dir", d.DataDir, "--server-name", serverName)
	if code != 0 {
		t.Fatalf("appservice remove: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := b2.as.BotIntent().Whoami(ctx(t)); matrixCode(err) != "M_UNKNOWN_TOKEN" {
		t.Fatalf("removed appservice's token: %v", err)
	}
}

// TestAppserviceBadRegistration: an invalid regex and an exclusive
// namespace overlapping another registration's are refused with a clear
// error, through the running daemon and offline, and store nothing.
func TestAppserviceBadRegistration(t *testing.T) {
	d := StartDaemon(t)
	b := newTestBridge(t, d, "tg")
	b.add(t, d)

	bad := appservice.CreateRegistration()
	bad.ID, bad.SenderLocalpart, bad.URL = "broken", "brokenbot", "http://127.0.0.1:9"
	bad.Namespaces.UserIDs = appservice.NamespaceList{{Regex: "^@broken_(+", Exclusive: true}}
	badFile := filepath.Join(t.TempDir(), "bad.yaml")
	bad.Save(badFile)

	overlap := appservice.CreateRegistration()
	overlap.ID, overlap.SenderLocalpart, overlap.URL = "tg2", "tg2bot", "http://127.0.0.1:9"
	overlap.Namespaces.UserIDs = appservice.NamespaceList{{Regex: "^@tg_.+:" + serverName + "$", Exclusive: true}}
	overlapFile := filepath.Join(t.TempDir(), "overlap.yaml")
	overlap.Save(overlapFile)

	check := func(when string) {
		t.Helper()
		for file, want := range map[string]string{badFile: "invalid regex", overlapFile: "overlaps appservice \"tg\""} {
			code, stdout, stderr := runHearth(t, "appservice", "add", file, "--data-dir", d.DataDir, "--server-name", serverName)
			if code == 0 || !strings.Contains(stderr, want) {
				t.Errorf("%s: add %s: exit %d, stderr %q, want %q", when, filepath.Base(file), code, stderr, want)
			}
			_ = stdout
		}
		code, stdout, _ := runHearth(t, "appservice", "list", "--data-dir", d.DataDir, "--server-name", serverName)
		if code != 0 || strings.Count(stdout, "\n") != 1 || !strings.HasPrefix(stdout, "tg\t") {
			t.Errorf("%s: list after refusals: %q", when, stdout)
		}
	}
	check("running")
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	check("stopped")
}
