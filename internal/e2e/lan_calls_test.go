package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/hearth-chat/hearth/calls/media"
	"github.com/hearth-chat/hearth/calls/media/mediatest"
)

// TestCallsOverLAN is issue 12's "between two daemons on a LAN with no
// internet": two default daemons (a data dir, and voicemail after 2 s on
// ben's) on two machines that reach each other only over the LAN, and
// person's clients made of mautrix-go and pion whose sockets are on
// those machines:
//   - alice@anna calls bob@ben; bob's client answers with his party_id,
//     alice selects it; the tone flows both ways over host candidates on
//     the LAN addresses and decodes on each side; both servers' rooms
//     hold invite, answer, select_answer and hangup once each;
//   - the same with alice's client on the relay only: its ICE servers
//     from anna's /voip/turnServer, asked on anna's loopback as a client
//     on that laptop does (so the URI names 127.0.0.1, and the relay is
//     allocated on anna's LAN address); bob's client stays host-only;
//     then both on their own server's relay (relay to relay);
//   - alice calls ben's owner, nobody answers: first with an offer whose
//     SDP is garbage (ben's agent hangs up, nothing is posted), then with
//     the tone, which ben's voicemail records and posts; the voice
//     message is in the room on both servers, and its file, which alice
//     downloads from anna (federated media), is the tone.
func TestCallsOverLAN(t *testing.T) {
	t.Parallel()
	lan := NewLAN(t)
	ha, hb := lan.AddHost("anna-laptop"), lan.AddHost("ben-laptop")
	ds := startLAN(t, []*Host{ha, hb}, func(i int) []string {
		if i == 1 {
			return []string{"--voicemail-after", "2"}
		}
		return nil
	})
	a, b := ds[0], ds[1]
	for _, p := range [][2]*lanDaemon{{a, b}, {b, a}} {
		d, o := p[0], p[1]
		WaitPeers(t, d.Daemon, nearbyListDeadline, "routes to "+o.ServerName(), func(ps []nearbyPeer) bool {
			i := slices.IndexFunc(ps, func(p nearbyPeer) bool { return p.ServerName == o.ServerName() })
			return i >= 0 && ps[i].Route == o.host.IP+":8448"
		})
	}
	alice, bob := Account(t, a.Daemon, "alice"), Account(t, b.Daemon, "bob")
	noErr(t, alice.SetDisplayName(ctx(t), "Anna"), "display name")
	room := lanRoom(t, alice, bob, false)

	t.Run("HostCandidates", func(t *testing.T) {
		caller := newCallParty(t, alice, room, true, callNet{Host: ha})
		callee := newCallParty(t, bob, room, true, callNet{Host: hb})
		lanCall(t, caller, callee, bob)
		for _, cc := range []*callCaller{caller, callee} {
			p := cc.selectedPair()
			if p.Local.Typ != webrtc.ICECandidateTypeHost || p.Remote.Typ != webrtc.ICECandidateTypeHost {
				t.Errorf("%s's media went over %s, want host to host", cc.c.UserID, p)
			}
		}
		p := caller.selectedPair()
		t.Logf("alice's media went over %s", p)
		if p.Local.Address != ha.IP || p.Remote.Address != hb.IP {
			t.Errorf("alice's media went over %s, want %s to %s", p, ha.IP, hb.IP)
		}
	})

	t.Run("Relay", func(t *testing.T) {
		caller := newCallParty(t, alice, room, true, relayNet(t, alice, ha))
		callee := newCallParty(t, bob, room, true, callNet{Host: hb})
		lanCall(t, caller, callee, bob)
		p := caller.selectedPair()
		t.Logf("alice's media went over %s", p)
		if p.Local.Typ != webrtc.ICECandidateTypeRelay || p.Local.Address != ha.IP ||
			p.Remote.Typ != webrtc.ICECandidateTypeHost || p.Remote.Address != hb.IP {
			t.Errorf("alice's media went over %s, want a relay on %s to bob's host %s", p, ha.IP, hb.IP)
		}
	})

	t.Run("BothRelays", func(t *testing.T) {
		// Each on their own server's relay: relay to relay across the LAN.
		caller := newCallParty(t, alice, room, true, relayNet(t, alice, ha))
		callee := newCallParty(t, bob, room, true, relayNet(t, bob, hb))
		lanCall(t, caller, callee, bob)
		p := caller.selectedPair()
		t.Logf("alice's media went over %s", p)
		if p.Local.Typ != webrtc.ICECandidateTypeRelay || p.Local.Address != ha.IP ||
			p.Remote.Typ != webrtc.ICECandidateTypeRelay || p.Remote.Address != hb.IP {
			t.Errorf("alice's media went over %s, want her relay on %s to bob's on %s", p, ha.IP, hb.IP)
		}
	})

	t.Run("Voicemail", func(t *testing.T) {
		ownerID, password := Owner(t, b.Daemon)
		owner := b.Client("", "")
		_, err := owner.Login(ctx(t), &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
			Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: ownerID},
			Password:   password, StoreCredentials: true})
		noErr(t, err, "ben's owner logs in")
		dm := lanRoom(t, alice, owner, true)

		// Garbage first: ben's agent rings, fails to read the offer and
		// hangs up; it posts nothing (checked below, once the real
		// voicemail is in).
		bad := newCallParty(t, alice, dm, false, callNet{Host: ha})
		bad.send("m.call.invite", map[string]any{"lifetime": 60000,
			"offer": map[string]any{"type": "offer", "sdp": "v=0\r\no=- this is not an offer\r\nm=audio x\r\n"}})
		if h := bad.await("m.call.hangup"); h.Sender != owner.UserID {
			t.Fatalf("the garbage call was hung up by %s, want ben's agent as %s", h.Sender, owner.UserID)
		}

		cc := newCallParty(t, alice, dm, true, callNet{Host: ha})
		cc.invite()
		ans := cc.takeAnswer()
		party, _ := ans.Content.Raw["party_id"].(string)
		devices := must(owner.GetDevicesInfo(ctx(t))).get(t)
		if ans.Sender != owner.UserID || !slices.ContainsFunc(devices.Devices, func(d mautrix.RespDeviceInfo) bool {
			return string(d.DeviceID) == party && d.DisplayName == "Hearth voicemail"
		}) {
			t.Fatalf("answer from %s party %s, want the owner's voicemail device (devices %+v)", ans.Sender, party, devices.Devices)
		}
		cc.connected()
		noErr(t, media.PlayOgg(ctx(t), cc.tone, bytes.NewReader(mediatest.Tone())), "play the tone")
		cc.hangup()

		var msgs []*event.Event
		for _, c := range []*mautrix.Client{alice, owner} {
			msgs = append(msgs, waitFor(t, "the voice message on "+c.UserID.Homeserver(), func() (*event.Event, bool) {
				evs := roomEvents(t, c, dm, func(ev *event.Event) bool { return ev.Type == event.EventMessage })
				return lastOf(evs), len(evs) > 0
			}))
		}
		if msgs[0].ID != msgs[1].ID {
			t.Fatalf("the servers hold different voice messages: %s and %s", msgs[0].ID, msgs[1].ID)
		}
		raw := msgs[0].Content.Raw
		url, _ := raw["url"].(string)
		if _, voice := raw["org.matrix.msc3245.voice"].(map[string]any); raw["msgtype"] != "m.audio" || !voice ||
			msgs[0].Sender != owner.UserID || !strings.HasPrefix(url, "mxc://"+b.ServerName()+"/") {
			t.Fatalf("voice message from %s: %v", msgs[0].Sender, raw)
		}
		status, file := Raw(t, alice, http.MethodGet, "/_matrix/client/v1/media/download/"+strings.TrimPrefix(url, "mxc://"), nil)
		if status != http.StatusOK {
			t.Fatalf("alice downloads %s from %s: %d %s", url, a.ServerName(), status, file)
		}
		if rep, err := mediatest.CheckTone(file, mediatest.ToneDuration, 500*time.Millisecond); err != nil {
			t.Fatalf("the voicemail is not the tone: %v (%+v)", err, rep)
		}

		// The garbage call left its invite and the agent's hangup, and
		// nothing else: one message in the room, the real voicemail.
		for _, c := range []*mautrix.Client{alice, owner} {
			if got := callTypes(t, c, dm, bad.callID); !slices.Equal(got, []string{"m.call.invite", "m.call.hangup"}) {
				t.Errorf("the garbage call on %s: %v, want its invite and a hangup", c.UserID.Homeserver(), got)
			}
			if n := len(roomEvents(t, c, dm, func(ev *event.Event) bool { return ev.Type == event.EventMessage })); n != 1 {
				t.Errorf("%s holds %d messages in the room, want the one voicemail", c.UserID.Homeserver(), n)
			}
		}
	})
}

// relayNet is the network of c's client on its server's machine h,
// relay candidates only, with the ICE servers from c's /voip/turnServer.
// The client reaches its server at 127.0.0.1 (the namespace's loopback),
// as one on that laptop does: the relay it is given is there too, and
// allocates on the laptop's LAN address.
func relayNet(t *testing.T, c *mautrix.Client, h *Host) callNet {
	t.Helper()
	code, body := Raw(t, c, http.MethodGet, "/_matrix/client/v3/voip/turnServer", nil)
	var ts turnServer
	if code != http.StatusOK || json.Unmarshal(body, &ts) != nil || len(ts.URIs) == 0 {
		t.Fatalf("turnServer for %s: %d %s", c.UserID, code, body)
	}
	if !strings.HasPrefix(ts.URIs[0], "turn:127.0.0.1:") {
		t.Fatalf("turnServer on %s's loopback gave %v, want the relay at 127.0.0.1", h.NS, ts.URIs)
	}
	return callNet{Host: h, Relay: true,
		ICEServers: []webrtc.ICEServer{{URLs: ts.URIs, Username: ts.Username, Credential: ts.Password}}}
}

// lanRoom: from opens a room with to (a DM when direct) on another
// server, inviting them by ID; to joins, and from's server sees the join.
func lanRoom(t *testing.T, from, to *mautrix.Client, direct bool) id.RoomID {
	t.Helper()
	req := &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{to.UserID}}
	if direct {
		req.Preset, req.IsDirect = "trusted_private_chat", true
	}
	room := CreateRoom(t, from, req)
	SyncUntil(t, to, "", "", "the invite on "+to.UserID.Homeserver(), func(r *mautrix.RespSync) bool {
		return r.Rooms.Invite[room] != nil
	})
	Join(t, to, room)
	waitMembership(t, from, room, to.UserID, "the join on "+from.UserID.Homeserver(), "join")
	return room
}

// lanCall: caller calls, callee answers and is selected; once the media
// is connected each plays the tone to the other and records what it
// gets, which must decode to the tone; then the caller hangs up. Both
// servers then hold the call's invite, answer, select_answer and hangup
// once each, and nothing else of it.
func lanCall(t *testing.T, caller, callee *callCaller, calleeUser *mautrix.Client) {
	t.Helper()
	caller.invite()
	callee.answerInvite()
	if ans := caller.takeAnswer(); ans.Sender != calleeUser.UserID || ans.Content.Raw["party_id"] != callee.party {
		t.Fatalf("answer from %s party %v, want %s party %s", ans.Sender, ans.Content.Raw["party_id"], calleeUser.UserID, callee.party)
	}
	callee.selected()
	caller.connected()
	callee.connected()
	played := make(chan error, 2)
	for _, cc := range []*callCaller{caller, callee} {
		go func() {
			played <- media.PlayOgg(ctx(t), cc.tone, bytes.NewReader(mediatest.Tone()))
		}()
	}
	for range 2 {
		noErr(t, <-played, "play the tone")
	}
	time.Sleep(300 * time.Millisecond) // the last packets are on their way
	for _, cc := range []*callCaller{caller, callee} {
		cc.stopRecording()
		file := <-cc.recorded
		if file == nil {
			t.Fatalf("%s received nothing", cc.c.UserID)
		}
		if rep, err := mediatest.CheckTone(file, mediatest.ToneDuration, 500*time.Millisecond); err != nil {
			t.Fatalf("what %s received is not the tone: %v (%+v)", cc.c.UserID, err, rep)
		}
	}
	caller.hangup()
	callee.await("m.call.hangup")
	want := []string{"m.call.invite", "m.call.answer", "m.call.select_answer", "m.call.hangup"}
	for _, cc := range []*callCaller{caller, callee} {
		if got := callTypes(t, cc.c, cc.roomID, caller.callID); !slices.Equal(got, want) {
			t.Errorf("the call in %s's room: %v, want %v once each", cc.c.UserID.Homeserver(), got, want)
		}
	}
}

// callTypes lists the types of the m.call.* events of a call in the
// room as c's server holds them, oldest first.
func callTypes(t *testing.T, c *mautrix.Client, room id.RoomID, callID string) []string {
	t.Helper()
	var types []string
	for _, ev := range roomEvents(t, c, room, func(ev *event.Event) bool {
		return strings.HasPrefix(ev.Type.Type, "m.call.") && ev.Content.Raw["call_id"] == callID
	}) {
		types = append(types, ev.Type.Type)
	}
	return types
}

// roomEvents pages back through the room on c's server and returns the
// events keep accepts, oldest first.
func roomEvents(t *testing.T, c *mautrix.Client, room id.RoomID, keep func(*event.Event) bool) []*event.Event {
	t.Helper()
	var out []*event.Event
	from := ""
	for range 100 {
		resp, err := c.Messages(ctx(t), room, from, "", mautrix.DirectionBackward, nil, 100)
		noErr(t, err, "page back through %s on %s", room, c.UserID.Homeserver())
		for _, ev := range resp.Chunk {
			if keep(ev) {
				out = append(out, ev)
			}
		}
		if resp.End == "" {
			break
		}
		from = resp.End
	}
	slices.Reverse(out)
	return out
}

func lastOf(evs []*event.Event) *event.Event {
	if len(evs) == 0 {
		return nil
	}
	return evs[len(evs)-1]
}

// hostNet is pion's view of a namespace host's network: its interfaces,
// and sockets opened inside it (netns.Host.Do), so a peer connection
// gathers the host's LAN address and reaches what that machine reaches
// (its own loopback included, where its daemon's relay listens).
func hostNet(t *testing.T, h *Host) transport.Net {
	t.Helper()
	var n *stdnet.Net
	noErr(t, h.Do(func() (err error) { n, err = stdnet.NewNet(); return err }), "pion's net in %s", h.NS)
	return &nsNet{Net: n, h: h}
}

type nsNet struct {
	*stdnet.Net
	h *Host
}

// in runs open inside the host's namespace.
func in[T any](h *Host, open func() (T, error)) (v T, err error) {
	if derr := h.Do(func() error { v, err = open(); return nil }); derr != nil {
		return v, fmt.Errorf("enter %s: %w", h.NS, derr)
	}
	return v, err
}

func (n *nsNet) ListenPacket(network, address string) (net.PacketConn, error) {
	return in(n.h, func() (net.PacketConn, error) { return n.Net.ListenPacket(network, address) })
}

func (n *nsNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	return in(n.h, func() (transport.UDPConn, error) { return n.Net.ListenUDP(network, laddr) })
}

func (n *nsNet) ListenTCP(network string, laddr *net.TCPAddr) (transport.TCPListener, error) {
	return in(n.h, func() (transport.TCPListener, error) { return n.Net.ListenTCP(network, laddr) })
}

func (n *nsNet) Dial(network, address string) (net.Conn, error) {
	return in(n.h, func() (net.Conn, error) { return n.Net.Dial(network, address) })
}

func (n *nsNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	return in(n.h, func() (transport.UDPConn, error) { return n.Net.DialUDP(network, laddr, raddr) })
}

func (n *nsNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	return in(n.h, func() (transport.TCPConn, error) { return n.Net.DialTCP(network, laddr, raddr) })
}

func (n *nsNet) CreateDialer(d *net.Dialer) transport.Dialer {
	return nsDialer{d: n.Net.CreateDialer(d), h: n.h}
}

func (n *nsNet) CreateListenConfig(lc *net.ListenConfig) transport.ListenConfig {
	return nsListenConfig{lc: n.Net.CreateListenConfig(lc), h: n.h}
}

type nsDialer struct {
	d transport.Dialer
	h *Host
}

func (d nsDialer) Dial(network, address string) (net.Conn, error) {
	return in(d.h, func() (net.Conn, error) { return d.d.Dial(network, address) })
}

type nsListenConfig struct {
	lc transport.ListenConfig
	h  *Host
}

func (l nsListenConfig) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return in(l.h, func() (net.Listener, error) { return l.lc.Listen(ctx, network, address) })
}

func (l nsListenConfig) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	return in(l.h, func() (net.PacketConn, error) { return l.lc.ListenPacket(ctx, network, address) })
}
