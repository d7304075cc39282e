package matrix

import (
	"context"
	"encoding/json"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// roomEngine is the room engine as the Client-Server API uses it
// (*room.Engine, given to New).
type roomEngine interface {
	// The stream: /sync's long poll and rooms section.
	Pos() (uint64, uint64)
	Wait(ctx context.Context, pos, ephemeral uint64) error
	EphemeralWatch() (uint64, <-chan struct{})
	SyncConcerns(userID string, from, to uint64, foreign func(store.Change) bool) (bool, error)
	Sync(req room.SyncRequest) (*room.SyncRooms, error)
	SyncShared(req room.SyncRequest, shape *room.SpanShape) (bool, error)
	SharedFromMemory(userID string, since, now uint64, shape *room.SpanShape, ignored map[string]bool) bool
	SpanChangeKinds(from, to uint64) (room.ChangeKinds, error)

	// Simplified Sliding Sync's room list, room results and extensions.
	SlidingList(userID string, now uint64, ignored map[string]bool, hideInvite func(tx *store.Tx, sender string) bool) ([]room.SlidingEntry, error)
	SlidingRooms(b room.SlidingBatch) (map[string]*room.SlidingRoom, error)
	SlidingChanges(userID string, since, now uint64) (ownReceipt, stateMoved map[string]bool, err error)
	SlidingReceipts(userID string, rooms []string, whole map[string]bool, since, now uint64) (map[string]json.RawMessage, error)
	SlidingTyping(rooms []string, whole map[string]bool, since uint64) map[string]json.RawMessage
	MemberEventsSince(userID string, since, now uint64) (map[string][]room.ClientEvent, [][]room.ClientEvent, error)

	// What local users do.
	CreateRoom(ctx context.Context, creator string, profile room.Profile, req room.CreateRequest) (string, error)
	Send(ctx context.Context, req room.SendRequest) (string, error)
	ChangeMembership(ctx context.Context, req room.MembershipRequest) (string, error)
	Forget(ctx context.Context, userID, roomID string) error
	RejectInviteLocally(ctx context.Context, userID, roomID string) (string, error)
	UpgradeRoom(ctx context.Context, req room.UpgradeRequest) (string, error)
	SetTyping(userID, roomID string, typing bool, timeout time.Duration) error
	SetReceipt(ctx context.Context, userID, roomID, typ, eventID, threadID string) (bool, error)
	SetAlias(ctx context.Context, userID, alias, roomID string) error
	DeleteAlias(ctx context.Context, userID, alias string) error
	SetPublished(ctx context.Context, userID, roomID string, public bool) error
	CheckCanonicalAlias(roomID string, content []byte) error

	// Events and state a user reads.
	Event(userID, roomID, eventID string) (*room.ClientEvent, error)
	EventForSession(userID, session, roomID, eventID string) (*room.ClientEvent, error)
	State(userID, roomID string) ([]room.ClientEvent, error)
	StateEvent(userID, roomID, typ, sk string) (*room.ClientEvent, error)
	CurrentStatePDU(roomID, typ, sk string) gomatrixserverlib.PDU
	Messages(userID, session, roomID string, from, to uint64, dir room.Direction, f room.EventFilter) (*room.Page, error)
	Context(userID, session, roomID, eventID string, limit int, f room.EventFilter) (*room.EventContext, error)
	Relations(req room.RelationsRequest) ([]room.ClientEvent, uint64, error)
	Threads(req room.ThreadsRequest) ([]room.ClientEvent, uint64, error)
	BackfillPoint(roomID string) (string, bool)
	Receipts(userID, roomID string) (map[string]map[string]map[string]any, error)
	PushEventAt(pos uint64) (*room.ClientEvent, error)

	// Members and memberships.
	MemberEvents(userID, roomID, membership, notMembership string, at uint64) ([]room.ClientEvent, error)
	JoinedMembers(userID, roomID string) (map[string]room.JoinedMember, error)
	JoinedRooms(userID string) ([]string, error)
	Memberships(userID string) ([]room.Membership, error)
	RoomMembership(userID, roomID string) string
	RoomExists(roomID string) bool
	SharesRoom(a, b string) bool
	HasLocalJoined(roomID string) bool
	JoinedServers(roomID string) ([]string, error)
	LocalJoinedMembers(roomID string) []gomatrixserverlib.PDU

	// Aliases, the directory, space summaries and room versions.
	ResolveAlias(alias string) (string, []string, error)
	LocalAliases(userID, roomID string) ([]string, error)
	Published(roomID string) (bool, error)
	PublicRoomsPage(filter, since string, limit int) (*room.PublicRoomsPage, error)
	SpaceSummary(roomID string, suggestedOnly bool) (*room.SpaceRoom, error)
	SpaceAccessible(userID string, sr *room.SpaceRoom) bool
	InviteSummary(userID, roomID string) (*room.SpaceRoom, error)
	DefaultVersion() gomatrixserverlib.RoomVersion

	// Erased users' events, served redacted (account deactivation).
	SetErased(f room.ErasedFunc, some bool)
	MarkErased(userID string, pos uint64)
}
