package matrix_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"github.com/hearth-chat/hearth/internal/keys"
)

// TestSlidingSyncToDeviceAndE2EE: the to_device extension delivers queued
// messages until a later since acknowledges them (then they are gone, as
// with /sync), a long poll wakes for a new one, and the e2ee extension
// carries the one-time key counts, fallback key types and device list
// changes /sync would.
func TestSlidingSyncToDeviceAndE2EE(t *testing.T) {
	ts := newTestServer(t)
	ts.API.SetKeys(keys.New(ts.DB, testServerName))
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ts.do(t, "POST", kv3+"/keys/upload", alice.Token, map[string]any{
		"device_keys":   deviceKeys(alice, "A"),
		"one_time_keys": map[string]any{"signed_curve25519:AAAA": otk("k1"), "signed_curve25519:AAAB": otk("k2")},
		"fallback_keys": map[string]any{"signed_curve25519:FB": map[string]any{"key": "fb", "fallback": true,
			"signatures": map[string]any{alice.ID: map[string]any{"ed25519:" + alice.DeviceID: "s"}}}},
	}).wantStatus(t, 200)
	sendTD := func(txn string, n int) {
		ts.do(t, "PUT", kv3+"/sendToDevice/m.test/"+txn, bob.Token, map[string]any{
			"messages": map[string]any{alice.ID: map[string]any{alice.DeviceID: map[string]any{"n": n}}}}).wantStatus(t, 200)
	}
	sendTD("t1", 1)
	body := func(since string) map[string]any {
		td := map[string]any{"enabled": true}
		if since != "" {
			td["since"] = since
		}
		return map[string]any{"conn_id": "e2ee", "extensions": map[string]any{
			"to_device": td, "e2ee": map[string]any{"enabled": true}}}
	}
	type toDevice struct {
		NextBatch string `json:"next_batch"`
		Events    []struct {
			Sender  string         `json:"sender"`
			Content map[string]int `json:"content"`
		} `json:"events"`
	}
	type e2ee struct {
		DeviceLists struct {
			Changed []string `json:"changed"`
			Left    []string `json:"left"`
		} `json:"device_lists"`
		OTK      map[string]int `json:"device_one_time_keys_count"`
		Fallback []string       `json:"device_unused_fallback_key_types"`
	}
	decode := func(r ssResp) (toDevice, e2ee) {
		var td toDevice
		var e e2ee
		if err := json.Unmarshal(r.Extensions["to_device"], &td); err != nil {
			t.Fatalf("to_device: %v: %s", err, r.Extensions["to_device"])
		}
		if err := json.Unmarshal(r.Extensions["e2ee"], &e); err != nil {
			t.Fatalf("e2ee: %v: %s", err, r.Extensions["e2ee"])
		}
		return td, e
	}
	r1 := ts.ssOK(t, alice, "", -1, body(""))
	td, e := decode(r1)
	if len(td.Events) != 1 || td.Events[0].Content["n"] != 1 || td.Events[0].Sender != bob.ID || td.NextBatch == "" {
		t.Fatalf("to_device = %+v", td)
	}
	if e.OTK["signed_curve25519"] != 2 || !slices.Equal(e.Fallback, []string{"signed_curve25519"}) {
		t.Fatalf("e2ee = %+v", e)
	}

	// A long poll wakes for a new to-device message; the first, now
	// acknowledged by next_batch, is not sent again.
	done := make(chan ssResp, 1)
	go func() { done <- ts.ssOK(t, alice, r1.Pos, 30000, body(td.NextBatch)) }()
	sendTD("t2", 2)
	r2 := <-done
	td, _ = decode(r2)
	if len(td.Events) != 1 || td.Events[0].Content["n"] != 2 {
		t.Fatalf("second to_device = %+v", td)
	}
	// Bob joins alice's room and uploads keys: alice's device list changes
	// name him, as /sync's device_lists.changed would.
	ts.join(t, bob, roomID)
	ts.do(t, "POST", kv3+"/keys/upload", bob.Token, map[string]any{"device_keys": deviceKeys(bob, "B")}).wantStatus(t, 200)
	r3 := ts.ssOK(t, alice, r2.Pos, 30000, body(td.NextBatch))
	td, e = decode(r3)
	if len(td.Events) != 0 || !slices.Contains(e.DeviceLists.Changed, bob.ID) {
		t.Fatalf("after bob joined: to_device %+v e2ee %+v", td, e)
	}
	// Bob leaves: he is in device_lists.left.
	ts.do(t, "POST", kv3+"/rooms/"+url.PathEscape(roomID)+"/leave", bob.Token, map[string]any{}).wantStatus(t, 200)
	r4 := ts.ssOK(t, alice, r3.Pos, 30000, body(td.NextBatch))
	_, e = decode(r4)
	if !slices.Contains(e.DeviceLists.Left, bob.ID) {
		t.Fatalf("after bob left: e2ee %+v", e)
	}
}

// TestSlidingSyncAccountDataReceiptsTyping: the account_data, receipts and
// typing extensions carry global and per-room account data, read receipts
// and typing for the rooms of the lists, and changes to them wake a long
// poll.
func TestSlidingSyncAccountDataReceiptsTyping(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ts.join(t, bob, roomID)
	ev := ts.send(t, bob, roomID, "m1", "hi")
	ts.do(t, "PUT", kv3+"/user/"+url.PathEscape(alice.ID)+"/account_data/m.example", alice.Token,
		map[string]any{"a": 1}).wantStatus(t, 200)
	ts.do(t, "PUT", kv3+"/user/"+url.PathEscape(alice.ID)+"/rooms/"+url.PathEscape(roomID)+"/account_data/m.tag", alice.Token,
		map[string]any{"tags": map[string]any{"u.work": map[string]any{}}}).wantStatus(t, 200)
	ts.do(t, "POST", kv3+"/rooms/"+url.PathEscape(roomID)+"/receipt/m.read/"+url.PathEscape(ev), bob.Token,
		map[string]any{}).wantStatus(t, 200)
	body := map[string]any{"lists": map[string]any{"all": ssList([][2]int{{0, 9}}, 1, nil)},
		"extensions": map[string]any{"account_data": map[string]any{"enabled": true},
			"receipts": map[string]any{"enabled": true}, "typing": map[string]any{"enabled": true}}}
	r1 := ts.ssOK(t, alice, "", -1, body)
	var ad struct {
		Global []struct{ Type string } `json:"global"`
		Rooms  map[string][]struct{ Type string }
	}
	json.Unmarshal(r1.Extensions["account_data"], &ad)
	if !slices.ContainsFunc(ad.Global, func(e struct{ Type string }) bool { return e.Type == "m.example" }) ||
		len(ad.Rooms[roomID]) != 1 || ad.Rooms[roomID][0].Type != "m.tag" {
		t.Fatalf("account_data = %s", r1.Extensions["account_data"])
	}
	var rc struct {
		Rooms map[string]struct {
			Type    string                               `json:"type"`
			Content map[string]map[string]map[string]any `json:"content"`
		} `json:"rooms"`
	}
	json.Unmarshal(r1.Extensions["receipts"], &rc)
	if rc.Rooms[roomID].Type != "m.receipt" || rc.Rooms[roomID].Content[ev]["m.read"][bob.ID] == nil {
		t.Fatalf("receipts = %s", r1.Extensions["receipts"])
	}

	// Typing wakes a long poll and is carried by the typing extension.
	done := make(chan ssResp, 1)
	go func() { done <- ts.ssOK(t, alice, r1.Pos, 30000, body) }()
	ts.do(t, "PUT", kv3+"/rooms/"+url.PathEscape(roomID)+"/typing/"+url.PathEscape(bob.ID), bob.Token,
		map[string]any{"typing": true, "timeout": 30000}).wantStatus(t, 200)
	r2 := <-done
	var ty struct {
		Rooms map[string]struct {
			Type    string `json:"type"`
			Content struct {
				UserIDs []string `json:"user_ids"`
			} `json:"content"`
		} `json:"rooms"`
	}
	json.Unmarshal(r2.Extensions["typing"], &ty)
	if got := ty.Rooms[roomID].Content.UserIDs; len(got) != 1 || got[0] != bob.ID {
		t.Fatalf("typing = %s", r2.Extensions["typing"])
	}
	// Unchanged account data is not sent again.
	json.Unmarshal(r2.Extensions["account_data"], &ad)
	ad.Global, ad.Rooms = nil, nil
	json.Unmarshal(r2.Extensions["account_data"], &ad)
	if len(ad.Global) != 0 || len(ad.Rooms) != 0 {
		t.Fatalf("account data sent again: %s", r2.Extensions["account_data"])
	}
}

// TestSlidingSyncE2EEAcrossReset: a connection started again (after
// M_UNKNOWN_POS, e.g. a daemon restart) that sends the to_device since of
// the last response its client processed gets the device-list changes
// made since then: they are not lost with the old connection.
func TestSlidingSyncE2EEAcrossReset(t *testing.T) {
	ts := newTestServer(t)
	ts.API.SetKeys(keys.New(ts.DB, testServerName))
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	roomID := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	body := func(since string) map[string]any {
		td := map[string]any{"enabled": true}
		if since != "" {
			td["since"] = since
		}
		return map[string]any{"conn_id": "encryption", "extensions": map[string]any{
			"to_device": td, "e2ee": map[string]any{"enabled": true}}}
	}
	r1 := ts.ssOK(t, alice, "", -1, body(""))
	var td struct {
		NextBatch string `json:"next_batch"`
	}
	json.Unmarshal(r1.Extensions["to_device"], &td)
	ts.join(t, bob, roomID)
	ts.do(t, "POST", kv3+"/keys/upload", bob.Token, map[string]any{"device_keys": deviceKeys(bob, "B")}).wantStatus(t, 200)
	r2 := ts.ssOK(t, alice, "", -1, body(td.NextBatch)) // a new connection
	var e struct {
		DeviceLists struct {
			Changed []string `json:"changed"`
		} `json:"device_lists"`
	}
	json.Unmarshal(r2.Extensions["e2ee"], &e)
	if !slices.Contains(e.DeviceLists.Changed, bob.ID) {
		t.Fatalf("device lists after a reset: %s", r2.Extensions["e2ee"])
	}
}
