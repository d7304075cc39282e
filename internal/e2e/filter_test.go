package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestFilterTimelineLimit uploads a filter with timeline limit 2 and checks
// that a sync with it is limited with a prev_batch from which /messages
// continues without duplicates or gaps, for an initial and an incremental
// sync.
func TestFilterTimelineLimit(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice, bob := d.Register("alice"), d.Register("bob")
	roomID := PublicRoom(t, alice, bob)
	for i := range 7 {
		SendText(t, alice, roomID, fmt.Sprintf("first batch %d", i))
	}

	f, err := bob.CreateFilter(ctx(t), &mautrix.Filter{Room: &mautrix.RoomFilter{Timeline: &mautrix.FilterPart{Limit: 2}}})
	noErr(t, err, "upload filter")
	if f.FilterID == "" {
		t.Fatal("empty filter_id")
	}
	// The filter can be read back.
	status, b := Raw(t, bob, http.MethodGet, "/_matrix/client/v3/user/"+url.PathEscape(bob.UserID.String())+"/filter/"+url.PathEscape(f.FilterID), nil)
	var stored mautrix.Filter
	if status != 200 || json.Unmarshal(b, &stored) != nil || stored.Room == nil || stored.Room.Timeline == nil || stored.Room.Timeline.Limit != 2 {
		t.Errorf("GET filter: %d %s", status, b)
	}

	full := eventIDs(History(t, bob, roomID, "", 100))

	// Initial sync: the last two events, limited, and /messages from
	// prev_batch gives all the rest.
	resp := Sync(t, bob, "", f.FilterID, 0)
	jr := resp.Rooms.Join[roomID]
	if jr == nil {
		t.Fatal("room missing from the filtered initial sync")
	}
	tl := TimelineIDs(resp, roomID)
	if len(tl) != 2 || !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
		t.Fatalf("filtered initial sync: %d events, limited %v, prev_batch %q; want 2, true, set", len(tl), jr.Timeline.Limited, jr.Timeline.PrevBatch)
	}
	older := eventIDs(History(t, bob, roomID, jr.Timeline.PrevBatch, 3))
	if got := append(older, tl...); !slices.Equal(got, full) {
		t.Errorf("/messages from prev_batch + timeline:\n got %v\nwant %v", got, full)
	}
	tok := Quiesce(t, bob, resp.NextBatch)

	// Incremental sync after five more: the last two, limited, and the
	// three in the gap come first when paginating back from prev_batch.
	// A topic change in the gap must come back in the state section.
	var batch []id.EventID
	for i := range 5 {
		if i == 1 {
			r, err := alice.SendStateEvent(ctx(t), roomID, event.StateTopic, "", map[string]any{"topic": "changed in the gap"})
			noErr(t, err, "set topic")
			batch = append(batch, r.EventID)
			continue
		}
		batch = append(batch, SendText(t, alice, roomID, fmt.Sprintf("second batch %d", i)))
	}
	resp = Sync(t, bob, tok, f.FilterID, 0)
	jr = resp.Rooms.Join[roomID]
	if jr == nil {
		t.Fatal("room missing from the filtered incremental sync")
	}
	tl = TimelineIDs(resp, roomID)
	if !slices.Equal(tl, batch[3:]) || !jr.Timeline.Limited || jr.Timeline.PrevBatch == "" {
		t.Fatalf("filtered incremental sync: timeline %v (want %v), limited %v, prev_batch %q", tl, batch[3:], jr.Timeline.Limited, jr.Timeline.PrevBatch)
	}
	topicInState := false
	for _, ev := range jr.State.Events {
		topicInState = topicInState || ev.ID == batch[1]
	}
	if !topicInState {
		t.Errorf("limited incremental sync: the topic change %s in the gap is not in the state section", batch[1])
	}
	page, err := bob.Messages(ctx(t), roomID, jr.Timeline.PrevBatch, "", mautrix.DirectionBackward, nil, 3)
	noErr(t, err, "/messages from the incremental prev_batch")
	gap := eventIDs(page.Chunk)
	slices.Reverse(gap)
	if !slices.Equal(gap, batch[:3]) {
		t.Errorf("the gap from prev_batch: %v, want %v", gap, batch[:3])
	}
	// Paginating all the way back gives the whole room once.
	all := append(eventIDs(History(t, bob, roomID, jr.Timeline.PrevBatch, 4)), tl...)
	if want := append(slices.Clone(full), batch...); !slices.Equal(all, want) {
		t.Errorf("whole history via prev_batch:\n got %v\nwant %v", all, want)
	}
	// A sync's next_batch is a valid /messages token too: backwards from it
	// come the newest events.
	newest, err := bob.Messages(ctx(t), roomID, resp.NextBatch, "", mautrix.DirectionBackward, nil, 2)
	noErr(t, err, "/messages from next_batch")
	if got := eventIDs(newest.Chunk); !slices.Equal(got, []id.EventID{batch[4], batch[3]}) {
		t.Errorf("/messages back from next_batch: %v, want [%s %s]", got, batch[4], batch[3])
	}
	// Forward pagination from the old prev_batch to now covers the batch.
	fwd, err := bob.Messages(ctx(t), roomID, jr.Timeline.PrevBatch, "", mautrix.DirectionForward, nil, 10)
	noErr(t, err, "forward /messages")
	if got := eventIDs(fwd.Chunk); !slices.Equal(got, batch[3:]) {
		t.Errorf("forward from prev_batch: %v, want %v", got, batch[3:])
	}
	// One more event: not limited, and no state repeated.
	tok = Quiesce(t, bob, resp.NextBatch)
	one := SendText(t, alice, roomID, "just one")
	small := Sync(t, bob, tok, f.FilterID, 0)
	if jr := small.Rooms.Join[roomID]; jr == nil || !slices.Equal(TimelineIDs(small, roomID), []id.EventID{one}) || jr.Timeline.Limited || len(jr.State.Events) != 0 {
		t.Errorf("incremental sync with one new event: %+v; want just %s, not limited, no state", jr, one)
	}
}

// TestLazyLoadMembers checks that with lazy_load_members the state of an
// initial sync holds only the member events of the timeline's senders and
// the syncing user, that an incremental sync brings the member event of a
// sender the client has not been sent yet, and that /messages returns its
// page's senders.
func TestLazyLoadMembers(t *testing.T) {
	t.Parallel()
	d := StartDaemon(t)
	alice, bob, carol, dave := d.Register("alice"), d.Register("bob"), d.Register("carol"), d.Register("dave")
	roomID := PublicRoom(t, alice, bob, carol, dave)
	SendText(t, carol, roomID, "carol talks early")
	for i := range 3 {
		SendText(t, alice, roomID, fmt.Sprintf("alice %d", i))
	}

	members := func(resp *mautrix.RespSync) []id.UserID {
		var out []id.UserID
		for _, ev := range resp.Rooms.Join[roomID].State.Events {
			if ev.Type == event.StateMember {
				out = append(out, id.UserID(ev.GetStateKey()))
			}
		}
		for _, ev := range resp.Rooms.Join[roomID].Timeline.Events {
			if ev.Type == event.StateMember {
				out = append(out, id.UserID(ev.GetStateKey()))
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}

	lazy := `{"room":{"timeline":{"limit":3},"state":{"lazy_load_members":true}}}`
	resp := Sync(t, bob, "", lazy, 0)
	if resp.Rooms.Join[roomID] == nil {
		t.Fatal("room missing from the lazy-loading sync")
	}
	if got, want := members(resp), sortedIDs(alice.UserID, bob.UserID); !slices.Equal(got, want) {
		t.Errorf("members with lazy loading: %v, want %v (timeline senders and self)", got, want)
	}
	// The summary still counts everyone (the spec requires it with lazy loading).
	if n := resp.Rooms.Join[roomID].Summary.JoinedMemberCount; n == nil || *n != 4 {
		t.Errorf("summary m.joined_member_count: %v, want 4", n)
	}

	// Incremental: dave speaks for the first time; his member event was
	// never sent to this client, so it must come with his message.
	tok := Quiesce(t, bob, resp.NextBatch)
	daveSays := SendText(t, dave, roomID, "dave speaks up")
	inc := SyncUntil(t, bob, tok, lazy, "dave's message", func(r *mautrix.RespSync) bool {
		return TimelineHas(r, roomID, daveSays)
	})
	if got := members(inc); !slices.Contains(got, dave.UserID) {
		t.Errorf("lazy-loading incremental sync with dave's first message: members %v, want dave's member event", got)
	}

	eager := `{"room":{"timeline":{"limit":3}}}`
	if got, want := members(Sync(t, bob, "", eager, 0)), sortedIDs(alice.UserID, bob.UserID, carol.UserID, dave.UserID); !slices.Equal(got, want) {
		t.Errorf("members without lazy loading: %v, want %v", got, want)
	}

	// /messages with lazy loading returns the members of the page's senders.
	page, err := bob.Messages(ctx(t), roomID, "", "", mautrix.DirectionBackward,
		&mautrix.FilterPart{LazyLoadMembers: true}, 4)
	noErr(t, err, "/messages with lazy loading")
	var got []id.UserID
	for _, ev := range page.State {
		if ev.Type == event.StateMember {
			got = append(got, id.UserID(ev.GetStateKey()))
		}
	}
	slices.Sort(got)
	var want []id.UserID
	for _, ev := range page.Chunk {
		want = append(want, ev.Sender)
	}
	slices.Sort(want)
	want = slices.Compact(want)
	if len(want) < 2 || !slices.Equal(got, want) {
		t.Errorf("/messages lazy-loaded members: %v, want the page's senders %v", got, want)
	}
}
