package federation

import (
	"context"
	"slices"
	"testing"

	"github.com/hearth-chat/hearth/internal/room"
)

// TestDeviceListsAnnouncedOnJoin: when a local user joins a room with
// other servers, those servers get m.device_list_update for the user's
// devices (Server-Server API §"Device Management": "when that user joins
// a room which contains servers which are not already receiving updates
// for that user's device list"), both for a join through another server
// (make_join/send_join) and for a local join of a room this server is
// already in. The receiving server records the news for /sync.
func TestDeviceListsAnnouncedOnJoin(t *testing.T) {
	n := newUKNet()
	// bob@hs2 joins alice@hs1's room through hs1.
	hs1, hs2, _, bob, roomID := sharedRoom(t, n, true)
	changed := func(s *ukServer, user string) bool {
		users, err := s.keys.ChangedUsers(0, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(users, user)
	}
	ukWaitFor(t, "hs1 hears of bob's devices after his join", func() bool { return changed(hs1, bob) })

	// carol@hs1 joins the room hs1 is already in: hs2 hears of her devices.
	carol := hs1.addUser(t, "carol", "CDEV", true)
	if changed(hs2, carol) {
		t.Fatal("hs2 recorded carol before she shared a room with bob")
	}
	if _, err := hs1.rooms.ChangeMembership(context.Background(), room.MembershipRequest{Sender: carol, RoomID: roomID,
		Target: carol, Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	ukWaitFor(t, "hs2 hears of carol's devices after her join", func() bool { return changed(hs2, carol) })
}
