package push

import (
	"context"

	"github.com/hearth-chat/hearth/internal/room"
)

// roomEngine is the room engine as push uses it (*room.Engine): the
// stream it follows, the events it evaluates and the read receipts that
// counts start from.
type roomEngine interface {
	ServerName() string
	Pos() (uint64, uint64)
	Wait(ctx context.Context, pos, ephemeral uint64) error
	// The evaluator's input: every new event with its room's local
	// members, and one user's events the stored log does not cover yet
	// (live counts).
	PushEventsAfter(from, to uint64, fn func(*room.PushEvent) error) error
	PushEventsFor(userID string, from, to uint64, fn func(*room.PushEvent) error) error
	ReadUpTo(userID, roomID string) (map[string]uint64, error)
}
