package matrix

import (
	"context"
	"encoding/json"

	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/push"
)

// syncReads are the per-user parts of a /sync response that are read in
// the rooms section's own transaction (room.SyncRequest.Also): to-device
// messages, one-time key counts and unread counts. Each used to open a
// read transaction of its own, five per woken long poll besides the
// rooms section's, all 50 pollers of a room at once after every message
// (docs/performance.md, "Delivery: one read per response").
type syncReads struct {
	toDevice     []json.RawMessage
	toDeviceNews bool
	// acked: messages at or before since are still queued; the response
	// deletes them after the transaction (e2ee.Service.AckToDevice).
	acked    bool
	otk      map[string]int
	fallback []string
	// live is push.Service.Live at the response's position, read before
	// the transaction (it may wait briefly for the evaluator).
	live *push.Live
	// noReceipts: the span holds no receipt (its change kinds), so the
	// counts push remembers may be taken without a read (CountsMem).
	noReceipts bool
	notified   []string
	counts     map[string]push.Counts // room ID → counts, for the rooms read
}

// readIn returns the room.SyncRequest.Also that fills r inside the
// rooms section's transaction, with counts for every joined room of the
// section and every room with new notifications.
func (s *Server) readIn(c *caller, since, now syncToken, r *syncReads) func(*store.Tx, *room.SyncRooms) error {
	return func(tx *store.Tx, rooms *room.SyncRooms) error {
		if s.keys != nil {
			r.toDevice, r.toDeviceNews, r.acked = e2ee.ToDeviceIn(tx, c.UserID, c.DeviceID, since.pos, now.pos)
			var ok bool
			if r.otk, r.fallback, ok = s.keys.CachedCounts(c.UserID, c.DeviceID); !ok {
				r.otk, r.fallback = e2ee.CountsIn(tx, c.UserID, c.DeviceID)
			}
		}
		if s.push == nil {
			return nil
		}
		if since.pos != 0 {
			r.notified = push.RoomsNotifiedIn(tx, c.UserID, since.pos, r.live, rooms.Active)
		}
		r.counts = map[string]push.Counts{}
		count := func(id string) error {
			if _, ok := r.counts[id]; ok {
				return nil
			}
			if r.noReceipts {
				if n, ok := s.push.CountsMem(c.UserID, id, since.pos, now.pos, r.live); ok {
					r.counts[id] = n
					return nil
				}
			}
			n, err := s.push.CountsIn(tx, c.UserID, id, r.live)
			r.counts[id] = n
			return err
		}
		for id := range rooms.Join {
			if err := count(id); err != nil {
				return err
			}
		}
		for _, id := range r.notified {
			if err := count(id); err != nil {
				return err
			}
		}
		return nil
	}
}

// ackToDevice deletes the to-device messages the token acknowledged, if
// the transaction saw any. The sync's own context is not passed down:
// the deletion should finish even if the client went away.
func (s *Server) ackToDevice(c *caller, since syncToken, r *syncReads) error {
	if s.keys == nil || !r.acked {
		return nil
	}
	return s.keys.AckToDevice(context.Background(), c.UserID, c.DeviceID, since.pos)
}

// unreadCounts are the user's counts in a room: as read in the
// transaction, or for a room it did not cover (one with only room account
// data news) in a transaction of their own.
func (s *Server) unreadCounts(c *caller, roomID string, r *syncReads) (push.Counts, error) {
	if n, ok := r.counts[roomID]; ok {
		return n, nil
	}
	return s.push.Counts(c.UserID, roomID, r.live)
}
