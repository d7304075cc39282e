package search

import (
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// roomEngine is the room engine as the index uses it (*room.Engine): a
// searcher's scope, through which every event a query reads and every
// visibility decision goes. The consumer reads new events with
// room.IndexableEvents, which needs no engine.
type roomEngine interface {
	SearchScope(userID, session string, fn func(tx *store.Tx, s *room.Scope) error) error
}
