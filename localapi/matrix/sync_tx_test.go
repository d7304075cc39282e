package matrix_test

import (
	"encoding/json"
	"net/url"
	"testing"

	"github.com/hearth-chat/hearth/internal/e2ee"
)

// TestSyncBuildsInOneReadTransaction: an incremental /sync that carries a
// new message, with unread counts and the E2EE sections wired as the
// daemon wires them, reads its to-device messages, key counts, notified
// rooms, receipts and unread counts in the rooms section's own read
// transaction (room.SyncRequest.Also). It used to open six more, one per
// section, for each of the 50 long polls a message wakes.
func TestSyncBuildsInOneReadTransaction(t *testing.T) {
	ps := newPushServer(t)
	ps.API.SetKeys(e2ee.New(ps.DB, testServerName))
	alice, bob := ps.register(t, "alice"), ps.register(t, "bob")
	roomID := ps.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	ps.do(t, "POST", covV3+"/join/"+url.PathEscape(roomID), bob.Token, map[string]any{}).wantStatus(t, 200)
	since := ps.do(t, "GET", covV3+"/sync?timeout=0", bob.Token, nil).str(t, "next_batch")
	ps.send(t, alice, roomID, "t1", "hello bob")
	ps.settle(t)
	// The counts are in the log now; stopped, the push service opens no
	// transactions of its own (its deliverer) while this one is counted.
	ps.Push.Stop()

	before := ps.DB.ReadTxs()
	r := ps.do(t, "GET", covV3+"/sync?timeout=0&since="+url.QueryEscape(since), bob.Token, nil)
	opened := ps.DB.ReadTxs() - before
	r.wantStatus(t, 200)

	var body struct {
		Rooms struct {
			Join map[string]struct {
				Timeline struct {
					Events []struct {
						Type string `json:"type"`
					} `json:"events"`
				} `json:"timeline"`
				Unread struct {
					Notifications int `json:"notification_count"`
				} `json:"unread_notifications"`
			} `json:"join"`
		} `json:"rooms"`
		OTK map[string]int `json:"device_one_time_keys_count"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	jr := body.Rooms.Join[roomID]
	if len(jr.Timeline.Events) != 1 || jr.Unread.Notifications != 1 || body.OTK["signed_curve25519"] != 0 {
		t.Fatalf("response: %s", r.Body)
	}
	// The access token, the span's change kinds, and the rooms section
	// with everything else.
	if opened > 3 {
		t.Errorf("the /sync opened %d read transactions, want at most 3", opened)
	}
}
