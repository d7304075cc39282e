package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// Simplified Sliding Sync (MSC4186) against a real daemon, over plain HTTP:
// mautrix-go has no sliding sync client.

const slidingPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

type slidingResp struct {
	Pos   string `json:"pos"`
	Lists map[string]struct {
		Count int `json:"count"`
	} `json:"lists"`
	Rooms map[string]struct {
		Initial       bool              `json:"initial"`
		Membership    string            `json:"membership"`
		BumpStamp     uint64            `json:"bump_stamp"`
		Timeline      []event.Event     `json:"timeline"`
		RequiredState []event.Event     `json:"required_state"`
		InviteState   []json.RawMessage `json:"invite_state"`
		Lists         []string          `json:"lists"`
	} `json:"rooms"`
	Extensions struct {
		ToDevice *struct {
			NextBatch string            `json:"next_batch"`
			Events    []json.RawMessage `json:"events"`
		} `json:"to_device"`
		E2EE *struct {
			OTK      map[string]int `json:"device_one_time_keys_count"`
			Fallback []string       `json:"device_unused_fallback_key_types"`
		} `json:"e2ee"`
	} `json:"extensions"`
}

func slidingSync(t testing.TB, c *mautrix.Client, pos string, timeout time.Duration, body any) slidingResp {
	t.Helper()
	path := slidingPath + "?timeout=" + fmt.Sprint(timeout.Milliseconds())
	if pos != "" {
		path += "&pos=" + url.QueryEscape(pos)
	}
	status, b := Raw(t, c, "POST", path, body)
	if status != 200 {
		t.Fatalf("sliding sync: %d %s", status, b)
	}
	var r slidingResp
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("sliding sync: %v: %s", err, b)
	}
	return r
}

// byBump lists a response's rooms newest bump_stamp first.
func (r slidingResp) byBump() []string {
	ids := make([]string, 0, len(r.Rooms))
	for id := range r.Rooms {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return r.Rooms[ids[i]].BumpStamp > r.Rooms[ids[j]].BumpStamp })
	return ids
}

// TestSlidingSync: a window of the account's rooms in activity order, a
// long poll that wakes when a message moves a room to the top, an invite
// in an is_invite list, $LAZY members, and the to_device and e2ee
// extensions carrying what /sync would, and M_UNKNOWN_POS after a restart.
func TestSlidingSync(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice, bob := d.Register("alice"), d.Register("bob")
	var rooms []id.RoomID
	for i := 0; i < 25; i++ {
		rooms = append(rooms, CreateRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: fmt.Sprint("room ", i)}))
	}
	Join(t, bob, rooms[0])
	for i, r := range rooms {
		SendText(t, alice, r, fmt.Sprint("message ", i))
	}
	Join(t, bob, rooms[24])
	SendText(t, bob, rooms[24], "bob was here")

	body := map[string]any{"conn_id": "room-list", "lists": map[string]any{
		"all": map[string]any{"ranges": [][2]int{{0, 19}}, "timeline_limit": 1,
			"required_state": [][]string{{"m.room.member", "$LAZY"}, {"m.room.name", ""}}},
		"invites": map[string]any{"ranges": [][2]int{{0, 19}}, "timeline_limit": 0, "required_state": [][]string{},
			"filters": map[string]any{"is_invite": true}},
	}, "extensions": map[string]any{"to_device": map[string]any{"enabled": true}, "e2ee": map[string]any{"enabled": true}}}
	r1 := slidingSync(t, alice, "", 0, body)
	if r1.Lists["all"].Count != 25 || r1.Lists["invites"].Count != 0 {
		t.Fatalf("counts = %+v", r1.Lists)
	}
	var want []string
	for i := 24; i >= 5; i-- {
		want = append(want, rooms[i].String())
	}
	if got := r1.byBump(); !slices.Equal(got, want) {
		t.Fatalf("first window in bump order = %v, want %v", got, want)
	}
	// $LAZY: the member event of the timeline's one sender, no other.
	top := r1.Rooms[rooms[24].String()]
	var members []string
	for _, ev := range top.RequiredState {
		if ev.Type == event.StateMember {
			members = append(members, *ev.StateKey)
		}
	}
	if len(top.Timeline) != 1 || top.Timeline[0].Sender != bob.UserID || !slices.Equal(members, []string{bob.UserID.String()}) {
		t.Fatalf("top room: timeline %+v, lazy members %v", top.Timeline, members)
	}

	// A long poll wakes when a message moves the oldest room to the top.
	done := make(chan slidingResp, 1)
	go func() { done <- slidingSync(t, alice, r1.Pos, 30*time.Second, body) }()
	select {
	case r := <-done:
		t.Fatalf("the long poll returned before anything happened: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	eid := SendText(t, bob, rooms[0], "to the top")
	r2 := <-done
	moved, ok := r2.Rooms[rooms[0].String()]
	if !ok || !moved.Initial || len(moved.Timeline) != 1 || moved.Timeline[0].ID != eid {
		t.Fatalf("woken response: %+v", r2.Rooms)
	}
	if moved.BumpStamp <= r1.Rooms[rooms[24].String()].BumpStamp {
		t.Fatalf("bump_stamp %d is not above the previous top's %d", moved.BumpStamp, r1.Rooms[rooms[24].String()].BumpStamp)
	}

	// An invite shows in the is_invite list.
	invited := CreateRoom(t, bob, &mautrix.ReqCreateRoom{Name: "come along", Invite: []id.UserID{alice.UserID}})
	var r3 slidingResp
	pos := r2.Pos
	for deadline := time.Now().Add(waitDeadline); ; {
		r3 = slidingSync(t, alice, pos, 10*time.Second, body)
		pos = r3.Pos
		if _, ok := r3.Rooms[invited.String()]; ok || time.Now().After(deadline) {
			break
		}
	}
	inv := r3.Rooms[invited.String()]
	if inv.Membership != "invite" || len(inv.InviteState) == 0 || !slices.Contains(inv.Lists, "invites") ||
		r3.Lists["invites"].Count != 1 {
		t.Fatalf("invite: %+v, lists %+v", inv, r3.Lists)
	}

	// to_device and e2ee: what /sync reports for the same device.
	status, b := Raw(t, alice, "POST", "/_matrix/client/v3/keys/upload", map[string]any{
		"one_time_keys": map[string]any{"signed_curve25519:AAAA": map[string]any{"key": "k1",
			"signatures": map[string]any{alice.UserID.String(): map[string]any{"ed25519:" + alice.DeviceID.String(): "s"}}}}})
	if status != 200 {
		t.Fatalf("keys/upload: %d %s", status, b)
	}
	_, err := bob.SendToDevice(ctx(t), event.NewEventType("m.test"), &mautrix.ReqSendToDevice{
		Messages: map[id.UserID]map[id.DeviceID]*event.Content{alice.UserID: {alice.DeviceID: {Raw: map[string]any{"n": 1}}}}})
	noErr(t, err, "sendToDevice")
	var r4 slidingResp
	for deadline := time.Now().Add(waitDeadline); ; {
		r4 = slidingSync(t, alice, pos, 10*time.Second, body)
		pos = r4.Pos
		if (r4.Extensions.ToDevice != nil && len(r4.Extensions.ToDevice.Events) > 0) || time.Now().After(deadline) {
			break
		}
	}
	if r4.Extensions.ToDevice == nil || len(r4.Extensions.ToDevice.Events) != 1 {
		t.Fatalf("to_device: %+v", r4.Extensions.ToDevice)
	}
	classic := Sync(t, alice, "", "", 0)
	if r4.Extensions.E2EE == nil || r4.Extensions.E2EE.OTK["signed_curve25519"] != classic.DeviceOTKCount.SignedCurve25519 ||
		classic.DeviceOTKCount.SignedCurve25519 != 1 {
		t.Fatalf("e2ee %+v, /sync's one-time key count %+v", r4.Extensions.E2EE, classic.DeviceOTKCount)
	}

	// Connections live in memory: after a restart the pos is unknown and
	// the client starts again (MSC4186's M_UNKNOWN_POS reset).
	d.Restart()
	status, b = Raw(t, alice, "POST", slidingPath+"?timeout=0&pos="+url.QueryEscape(pos), body)
	var e struct {
		Errcode string `json:"errcode"`
	}
	json.Unmarshal(b, &e)
	if status != 400 || e.Errcode != "M_UNKNOWN_POS" {
		t.Fatalf("pos after a restart: %d %s", status, b)
	}
	if r := slidingSync(t, alice, "", 0, body); r.Lists["all"].Count != 26 { // the 25 rooms and the invite
		t.Fatalf("new connection after restart: %+v", r.Lists)
	}
}
