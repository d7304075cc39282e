package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// todaysFederationSettings are the flags two daemons on the namespace LAN
// need today to federate, not only to see each other: certificates from a
// CA the test makes, trusted through ca_file, since today a peer's
// self-signed certificate is refused.
// TODO(issue 11, h-lanfed): with the pinned certificate key bound to the
// signing key, a LAN peer needs no CA: drop ca_file and the CA, then the
// whole list (federation on by default with a generated certificate).
func todaysFederationSettings(ca *fedNet, name string) []string {
	cert, key := ca.issue(name)
	return []string{"--federation-listen", "0.0.0.0:8448", "--tls-cert", cert, "--tls-key", key, "--ca-file", ca.caFile}
}

// nearbyRecoverDeadline bounds delivery after a peer came back (its cable
// put back). Today the federation queue retries with back-off (5 s
// doubling, ±25%: after 20 s out the next try may be ~50 s away) and
// discovery keeps the peer's route while it is away less than PeerTTL, so
// delivery took 10–20 s in trials.
// TODO(issue 11, h-mdns/h-lanfed): the issue wants queued events delivered
// as soon as the peer reappears (its re-announcement resetting the
// back-off); tighten this to a few seconds with that work.
const nearbyRecoverDeadline = 90 * time.Second

// TestNearbyChatOverLAN: alice on one machine starts a DM with bob on the
// other, found on the LAN (no federation_servers, no DNS: the route comes
// from discovery); they write both ways. Then bob's cable is pulled for
// 20 s while alice writes; once it is back, bob gets every message once,
// in order.
func TestNearbyChatOverLAN(t *testing.T) {
	t.Parallel()
	lan := NewLAN(t)
	ca := newFedNet(t) // only its CA
	hosts := []*Host{lan.AddHost("anna-laptop"), lan.AddHost("ben-laptop")}
	ds := startLAN(t, hosts, func(i int) []string { return todaysFederationSettings(ca, hosts[i].Hostname) })
	a, b := ds[0], ds[1]
	for _, p := range [][2]*lanDaemon{{a, b}, {b, a}} {
		WaitPeers(t, p[0].Daemon, nearbyListDeadline, "routes to "+p[1].ServerName(), func(ps []nearbyPeer) bool {
			i := slices.IndexFunc(ps, func(x nearbyPeer) bool { return x.ServerName == p[1].ServerName() })
			return i >= 0 && ps[i].Route == p[1].host.IP+":8448"
		})
	}

	alice, bob := Account(t, a.Daemon, "alice"), Account(t, b.Daemon, "bob")
	roomID := CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true,
		Invite: []id.UserID{bob.UserID}})
	bobTok := SyncUntil(t, bob, "", "", "the DM invite on "+b.ServerName(), func(r *mautrix.RespSync) bool {
		return r.Rooms.Invite[roomID] != nil
	}).NextBatch
	Join(t, bob, roomID)
	waitMembership(t, alice, roomID, bob.UserID, "bob joined, as alice's server sees it", "join")

	aliceTok := Quiesce(t, alice, Sync(t, alice, "", "", 0).NextBatch)
	SendText(t, alice, roomID, "hi bob, it's anna next door")
	var got []string
	SyncUntil(t, bob, bobTok, "", "alice's message on "+b.ServerName(), collectTexts(roomID, &got, 1))
	if got[0] != "hi bob, it's anna next door" {
		t.Fatalf("bob got %q", got)
	}
	SendText(t, bob, roomID, "hi anna")
	got = nil // alice's sync has her own message, then bob's
	SyncUntil(t, alice, aliceTok, "", "bob's message on "+a.ServerName(), collectTexts(roomID, &got, 2))
	if got[1] != "hi anna" {
		t.Fatalf("alice got %q", got)
	}

	// The cable: out for 20 s while alice writes, then back.
	b.host.Unplug()
	pulled := time.Now()
	var want []string
	for i := range 5 {
		msg := fmt.Sprintf("while your cable was out %d", i)
		want = append(want, msg)
		SendText(t, alice, roomID, msg)
	}
	time.Sleep(20*time.Second - time.Since(pulled)) // the scenario, not an assertion
	// The cable was really out: nothing of it reached bob.
	if texts := roomTexts(t, bob, roomID); len(texts) != 2 {
		t.Fatalf("bob's room with the cable out: %q, want only the first two", texts)
	}
	b.host.Plug()
	plugged := time.Now()
	deadline := plugged.Add(nearbyRecoverDeadline)
	for {
		texts := roomTexts(t, bob, roomID)
		if len(texts) >= 2+len(want) {
			if !slices.Equal(texts[2:], want) {
				t.Fatalf("bob's room after the cable came back: %q, want %q after the first two (loss, duplicates or order)", texts, want)
			}
			t.Logf("the messages sent while the cable was out reached bob %v after it was back", time.Since(plugged))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob has %q %v after the cable came back; want %q", texts, nearbyRecoverDeadline, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
