package e2e

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestSyncStateAfterOverFederationGap: MSC4222 (spec v1.16
// use_state_after) where state comes from another server through a gap.
// mallory@peer renames himself in an event hs1 never receives, then sends
// a message after it; hs1 takes the state at the gap from /state. Alice's
// incremental sync from before, with use_state_after, carries the new
// name in state_after (there is no timeline event for it) and no state
// section; so does her initial sync.
func TestSyncStateAfterOverFederationGap(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	s.since = Quiesce(t, s.alice, s.since)
	mallory := s.peer.mallory()

	pm := s.renameAtGap(t, "Mallory After")
	SyncUntil(t, s.alice, s.since, "", "mallory's message", func(r *mautrix.RespSync) bool {
		return TimelineHas(r, s.roomID, id.EventID(pm.EventID()))
	})

	renamed := func(evs []*event.Event) bool {
		for _, ev := range evs {
			if ev.Type == event.StateMember && ev.GetStateKey() == mallory && ev.Content.Raw["displayname"] == "Mallory After" {
				return true
			}
		}
		return false
	}
	for what, since := range map[string]string{"incremental": s.since, "initial": ""} {
		resp, err := s.alice.FullSyncRequest(ctx(t), mautrix.ReqSync{Since: since, UseStateAfter: true})
		noErr(t, err, "%s sync with use_state_after", what)
		jr := resp.Rooms.Join[s.roomID]
		switch {
		case jr == nil:
			t.Errorf("%s: the room is not in alice's sync", what)
		case jr.StateAfter == nil:
			t.Errorf("%s: no state_after", what)
		case len(jr.State.Events) != 0:
			t.Errorf("%s: a state section beside state_after (%d events)", what, len(jr.State.Events))
		case !renamed(jr.StateAfter.Events):
			t.Errorf("%s: state_after lacks mallory's new name, the room's state now (%d events)", what, len(jr.StateAfter.Events))
		}
	}
}
