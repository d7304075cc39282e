//go:build goolm

// The goolm tag: the encrypted DM uses mautrix's pure-Go Olm (see
// crypto_test.go). `make test` passes it.

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/hearth-chat/hearth/discovery"
)

// nearbyRecoverDeadline bounds delivery after a peer came back (its cable
// put back, its daemon restarted). The issue wants queued events
// delivered as soon as the peer reappears: its re-announcement reaches
// discovery, which wakes the federation queue for it (no back-off wait).
// The bound leaves room for the re-announcement after the link comes up
// and for the transaction itself on a 2-core machine running other tests.
const nearbyRecoverDeadline = 5 * time.Second

// TestNearbyChatOverLAN is issue 11's story with the default settings
// only (each daemon gets a data dir and nothing else: no certificate, no
// CA, no server name, no federation_servers, no DNS), on three machines
// that reach each other only over the LAN:
//   - alice (a) opens an encrypted DM with bob (b); they exchange messages
//     and an image both ways, each decrypting what the other sent (the
//     image is fetched from the sender's server over the LAN);
//   - carol (c) finds a public room of a through a's /publicRooms, joins
//     it and backfills its history;
//   - a fourth machine announces bob's server name with another key: it
//     is listed as a key change and gets nothing;
//   - bob's cable is pulled for 20 s while alice writes in that room;
//     once it is back, bob gets every message once, in order;
//   - bob's daemon stops cleanly while alice writes; after its restart he
//     gets those too, once each, in order.
func TestNearbyChatOverLAN(t *testing.T) {
	t.Parallel()
	lan := NewLAN(t)
	hosts := []*Host{lan.AddHost("anna-laptop"), lan.AddHost("ben-laptop"), lan.AddHost("cleo-desktop")}
	ds := startLAN(t, hosts, nil)
	a, b, c := ds[0], ds[1], ds[2]
	for _, d := range ds {
		for _, o := range ds {
			if o != d {
				waitRouted(t, d, o)
			}
		}
	}
	alice, bob, carol := Account(t, a.Daemon, "alice"), Account(t, b.Daemon, "bob"), Account(t, c.Daemon, "carol")

	// The encrypted DM.
	dm := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true,
		Invite: []id.UserID{bob.UserID},
		InitialState: []*event.Event{{Type: event.StateEncryption, Content: event.Content{
			Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}}}}})
	SyncUntil(t, bob, "", "", "the DM invite on "+b.ServerName(), func(r *mautrix.RespSync) bool {
		return r.Rooms.Invite[dm] != nil
	})
	Join(t, bob, dm)
	waitMembership(t, alice, dm, bob.UserID, "bob joined the DM, as alice's server sees it", "join")
	state := &roomState{room: dm}
	ae, be := newCryptoUser(t, alice, state), newCryptoUser(t, bob, state)
	members := []id.UserID{alice.UserID, bob.UserID}
	for _, m := range []struct {
		from, to *cryptoUser
		text     string
	}{{ae, be, "hi bob, it's anna next door"}, {be, ae, "hi anna, no internet here either"}} {
		ev := m.from.send(t, dm, members, m.text)
		if got := m.to.receive(t, dm, ev); got != m.text {
			t.Fatalf("%s decrypted %q, want %q", m.to.client.UserID, got, m.text)
		}
	}
	for i, m := range []struct{ from, to *cryptoUser }{{ae, be}, {be, ae}} {
		sendReceiveImage(t, m.from, m.to, dm, members, byte(i))
	}

	// The public room of a, found through a's directory.
	lobby := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public",
		Name: "Kitchen table"})
	var history []string
	for i := range 3 {
		history = append(history, fmt.Sprintf("before carol came %d", i))
		SendText(t, alice, lobby, history[i])
	}
	found := publicRoomsOf(t, carol, a.ServerName())
	if !slices.Contains(found, lobby) {
		t.Fatalf("%s's /publicRooms as carol sees it: %v, want %s", a.ServerName(), found, lobby)
	}
	_, err := carol.JoinRoom(ctx(t), lobby.String(), &mautrix.ReqJoinRoom{Via: []string{a.ServerName()}})
	noErr(t, err, "carol joins %s via %s", lobby, a.ServerName())
	if got := roomTexts(t, carol, lobby); !slices.Equal(got, history) {
		t.Fatalf("carol's history of the room: %q, want %q", got, history)
	}
	_, err = bob.JoinRoom(ctx(t), lobby.String(), &mautrix.ReqJoinRoom{Via: []string{a.ServerName()}})
	noErr(t, err, "bob joins %s", lobby)
	if got := roomTexts(t, bob, lobby); !slices.Equal(got, history) { // backfilled while the cable is in
		t.Fatalf("bob's history of the room: %q, want %q", got, history)
	}

	// An impersonator: a fourth machine announces bob's server name with
	// a key of its own and a certificate binding that key signed, under
	// another instance name, and listens where it says its federation is.
	// alice's server lists the name as a key change and routes nothing to
	// it: alice's next message reaches bob (checked with the cable's
	// below, to keep the test short), and the impersonator gets no
	// connection in the whole test.
	mallory := lan.AddHost("mallory")
	trap := mallory.TrapTCP(t, 8448)
	fake, fakePriv := NewSigningKey(t)
	mallory.Announce(t, Announcement{Instance: "ben-laptop-2", HostName: "mallory", IP: net.ParseIP(mallory.IP),
		Port: 8448, TXT: append(HearthTXT(b.ServerName(), "ed25519:fake", fake),
			discovery.BindingTXT(b.ServerName(), sha256.Sum256([]byte("mallory's certificate")), fakePriv)...), TTL: 120})
	WaitPeers(t, a.Daemon, nearbyListDeadline, "lists "+b.ServerName()+" as a key change", func(ps []nearbyPeer) bool {
		// bob's own entry stays beside the impersonator's, in either order.
		return slices.ContainsFunc(ps, func(p nearbyPeer) bool {
			return p.ServerName == b.ServerName() && p.KeyChanged && p.Route == "" && slices.Contains(p.Addresses, mallory.IP)
		})
	})
	const claim = "someone else claims to be ben-laptop"
	SendText(t, alice, lobby, claim)

	// The cable: out for 20 s while alice writes, then back.
	b.host.Unplug()
	pulled := time.Now()
	var want []string
	for i := range 5 {
		want = append(want, fmt.Sprintf("while your cable was out %d", i))
		SendText(t, alice, lobby, want[i])
	}
	time.Sleep(20*time.Second - time.Since(pulled)) // the scenario, not an assertion
	// The cable was really out: none of it reached bob.
	if texts := roomTexts(t, bob, lobby); len(texts) > len(history)+1 {
		t.Fatalf("bob's room with the cable out: %q, want at most %q and %q", texts, history, claim)
	}
	b.host.Plug()
	want = append(append(slices.Clone(history), claim), want...)
	waitRoomTexts(t, bob, lobby, want, "the cable came back")
	// The cable's 20 s were not enough for a to forget b, and a clean stop
	// is heard at once: b is gone from a's list within the 2 s.

	// A clean stop of b's daemon while alice writes; after its restart bob
	// gets what he missed, once each, in order.
	noErr(t, b.Stop(), "stop %s cleanly", b.ServerName())
	stopped := time.Now()
	WaitPeers(t, a.Daemon, nearbyGoneDeadline, "drops "+b.ServerName(), func(ps []nearbyPeer) bool {
		i := slices.IndexFunc(ps, func(p nearbyPeer) bool { return p.ServerName == b.ServerName() && !p.KeyChanged })
		return i < 0
	})
	t.Logf("%s dropped %s %v after its clean stop", a.ServerName(), b.ServerName(), time.Since(stopped))
	for i := range 3 {
		msg := fmt.Sprintf("while your server was off %d", i)
		want = append(want, msg)
		SendText(t, alice, lobby, msg)
	}
	b.Start()
	bob = b.Login("bob") // the old client would do too; a new device is what a restarted app might be
	waitRoomTexts(t, bob, lobby, want, "the daemon restarted")
	if n := trap.Conns(); n != 0 {
		t.Fatalf("the impersonator of %s got %d connections", b.ServerName(), n)
	}
}

// waitRoomTexts waits until c's server has exactly want as the room's
// messages, failing at once on anything else once it has as many (loss,
// duplicates or order) and after nearbyRecoverDeadline.
func waitRoomTexts(t *testing.T, c *mautrix.Client, room id.RoomID, want []string, after string) {
	t.Helper()
	start := time.Now()
	for {
		texts := roomTexts(t, c, room)
		if len(texts) >= len(want) {
			if !slices.Equal(texts, want) {
				t.Fatalf("%s's room after %s: %q, want %q (loss, duplicates or order)", c.UserID, after, texts, want)
			}
			t.Logf("%s had every message %v after %s", c.UserID, time.Since(start), after)
			return
		}
		if time.Since(start) > nearbyRecoverDeadline {
			t.Fatalf("%s has %q %v after %s; want %q", c.UserID, texts, nearbyRecoverDeadline, after, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitRouted waits until d lists o with a federation route to o's host.
func waitRouted(t *testing.T, d, o *lanDaemon) {
	t.Helper()
	WaitPeers(t, d.Daemon, nearbyListDeadline, "routes to "+o.ServerName(), func(ps []nearbyPeer) bool {
		return slices.ContainsFunc(ps, func(p nearbyPeer) bool {
			return p.ServerName == o.ServerName() && p.Route == o.host.IP+":8448"
		})
	})
}

// sendReceiveImage: from uploads an encrypted PNG to its server and sends
// it in an encrypted event; to decrypts the event, downloads the file
// through its own server (which fetches it from from's over federation)
// and decrypts it to the same bytes.
func sendReceiveImage(t *testing.T, from, to *cryptoUser, room id.RoomID, members []id.UserID, seed byte) {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 24, 24))
	for i := range img.Pix {
		img.Pix[i] = byte(i*7) + seed
	}
	var plain bytes.Buffer
	noErr(t, png.Encode(&plain, img), "encode png")
	file := attachment.NewEncryptedFile()
	upload := must(from.client.UploadBytes(ctx(t), encryptCopy(file, plain.Bytes()), "application/octet-stream")).get(t)
	noErr(t, from.mach.ShareGroupSession(ctx(t), room, members), "share session of %s", from.client.UserID)
	content, err := from.mach.EncryptMegolmEvent(ctx(t), room, event.EventMessage, &event.MessageEventContent{
		MsgType: event.MsgImage, Body: "photo.png",
		File: &event.EncryptedFileInfo{EncryptedFile: *file, URL: upload.ContentURI.CUString()},
		Info: &event.FileInfo{MimeType: "image/png", Width: 24, Height: 24, Size: plain.Len()},
	})
	noErr(t, err, "encrypt the image event of %s", from.client.UserID)
	ev := must(from.client.SendMessageEvent(ctx(t), room, event.EventEncrypted, content)).get(t).EventID

	got := to.receiveMessage(t, room, ev)
	if got.MsgType != event.MsgImage || got.File == nil {
		t.Fatalf("%s decrypted %+v, want an encrypted image", to.client.UserID, got)
	}
	uri, err := got.File.URL.Parse()
	noErr(t, err, "parse the image URI")
	cipher := must(to.client.DownloadBytes(ctx(t), uri)).get(t)
	noErr(t, got.File.PrepareForDecryption(), "prepare decryption")
	clear, err := decryptCopy(got.File, cipher)
	noErr(t, err, "%s decrypts the image", to.client.UserID)
	if !bytes.Equal(clear, plain.Bytes()) {
		t.Fatalf("the image %s decrypted differs from the one %s sent", to.client.UserID, from.client.UserID)
	}
}

// publicRoomsOf lists the rooms in server's public directory, asked
// through c's server (GET /publicRooms?server=, as Element's Explore
// rooms does with a server name).
func publicRoomsOf(t *testing.T, c *mautrix.Client, server string) []id.RoomID {
	t.Helper()
	code, body := Raw(t, c, http.MethodGet, "/_matrix/client/v3/publicRooms?server="+url.QueryEscape(server), nil)
	if code != http.StatusOK {
		t.Fatalf("publicRooms of %s: %d %s", server, code, body)
	}
	var page mautrix.RespPublicRooms
	noErr(t, json.Unmarshal(body, &page), "decode publicRooms: %s", body)
	var out []id.RoomID
	for _, r := range page.Chunk {
		out = append(out, r.RoomID)
	}
	return out
}
