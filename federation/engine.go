package federation

import (
	"context"
	"encoding/json"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// roomEngine is the room engine as the federation service uses it
// (*room.Engine, set by the daemon in Config.Rooms).
type roomEngine interface {
	// Events other servers send: transactions, what /send fetches for
	// them, joins made through another server, backfill, invites and
	// knocks.
	Ingest(ctx context.Context, pdu gomatrixserverlib.PDU, opts room.IngestOptions) error
	IngestStream(ctx context.Context, n int, next func(i int) (gomatrixserverlib.PDU, *room.AuthPrecheck, bool), then func(tx *store.Tx, results []error) error) (results []error, done int, committed bool)
	NewAuthPrechecker() *room.AuthPrechecker
	IngestWithState(ctx context.Context, pdu gomatrixserverlib.PDU, stateIDs []string) error
	JoinRemote(ctx context.Context, join gomatrixserverlib.PDU, state, authChain []gomatrixserverlib.PDU) error
	StoreOutliers(ctx context.Context, roomID string, pdus []gomatrixserverlib.PDU) error
	StoreBackfill(ctx context.Context, roomID string, pdus []gomatrixserverlib.PDU) (int, error)
	StoreMembershipOutlier(ctx context.Context, pdu gomatrixserverlib.PDU) error
	Extremities(roomID string) ([]string, error)
	HasStateAt(eventID string) bool
	BackfillPoint(roomID string) (string, bool)

	// What other servers ask: events, state and auth chains, make_join
	// and make_knock templates, invites, the space hierarchy, the
	// directory and aliases.
	PDU(server, roomID, eventID string) (gomatrixserverlib.PDU, error)
	StateBefore(roomID, eventID string) (state, authChain []gomatrixserverlib.PDU, err error)
	AuthChain(roomID, eventID string) ([]gomatrixserverlib.PDU, error)
	WalkBack(server, roomID string, from, stopAt []string, limit int, minDepth int64, includeFrom bool) ([]gomatrixserverlib.PDU, error)
	Template(proto *gomatrixserverlib.ProtoEvent) (gomatrixserverlib.PDU, []gomatrixserverlib.PDU, error)
	RoomVersion(roomID string) (gomatrixserverlib.RoomVersion, error)
	RoomOfEvent(eventID string) (string, error)
	CurrentStatePDU(roomID, typ, sk string) gomatrixserverlib.PDU
	StrippedState(roomID, member string) ([]json.RawMessage, error)
	JoinAuthoriser(roomID, userID string) (string, error)
	PrepareInvite(req room.MembershipRequest) (gomatrixserverlib.PDU, []json.RawMessage, error)
	SpaceSummary(roomID string, suggestedOnly bool) (*room.SpaceRoom, error)
	PublicRoomsPage(filter, since string, limit int) (*room.PublicRoomsPage, error)
	ResolveAlias(alias string) (string, []string, error)

	// Who is in which room: ACLs, EDU destinations, device lists,
	// presence.
	ServerInRoom(roomID, server string) bool
	ServerAllowed(roomID, server string) bool
	JoinedServers(roomID string) ([]string, error)
	HasLocalJoined(roomID string) bool
	LocalJoinedMembers(roomID string) []gomatrixserverlib.PDU
	JoinedRooms(userID string) ([]string, error)
	Memberships(userID string) ([]room.Membership, error)
	ServersSharingRooms() []string
	ServersSharingRoomsWith(userID string) []string
	SharesRoomWithLocalUser(userID string) bool

	// Typing and receipt EDUs from other servers.
	SetTyping(userID, roomID string, typing bool, timeout time.Duration) error
	SetReceipt(ctx context.Context, userID, roomID, typ, eventID, threadID string) (bool, error)
}
