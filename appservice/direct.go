package appservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/hearth-chat/hearth/internal/store"
)

// Ephemeral events and to-device messages, queued as they happen rather
// than read from the stream.

// WantsEphemeral reports whether any appservice asked for ephemeral
// events: callers skip the room's member list otherwise.
func (q *Queue) WantsEphemeral() bool {
	for _, s := range q.reg.List() {
		if s.Reg.Ephemeral() {
			return true
		}
	}
	return false
}

// Ephemeral queues a room's ephemeral event (m.typing, m.receipt) for
// the appservices that asked for them (MSC2409, receive_ephemeral) and
// have a user joined to the room or claim it. The room engine calls it
// for local and remote users' changes alike (room.Engine.OnEphemeral).
// Best effort, like every ephemeral event: a failure is logged.
func (q *Queue) Ephemeral(roomID string, ev map[string]any) {
	if !q.WantsEphemeral() {
		return // no member list read for each typing notification
	}
	members, _, err := q.events.LocalJoinedAndAlias(roomID)
	if err == nil {
		err = q.QueueEphemeral(context.Background(), roomID, members, ev)
	}
	if err != nil {
		slog.Info("appservice: queue ephemeral event", "room", roomID, "type", ev["type"], "err", err)
	}
}

// QueueEphemeral queues an ephemeral event (m.typing, m.receipt) of roomID
// for the appservices that asked for them (MSC2409, receive_ephemeral)
// and have a user among members or claim the room.
func (q *Queue) QueueEphemeral(ctx context.Context, roomID string, members []string, ev map[string]any) error {
	var ids []string
	for _, s := range q.reg.List() {
		if !s.Reg.Ephemeral() {
			continue
		}
		want, _ := matches(s.Reg.Namespaces.Rooms, roomID)
		for _, m := range members {
			want = want || s.OwnsUser(m)
		}
		if want {
			ids = append(ids, s.ID())
		}
	}
	if len(ids) == 0 {
		return nil
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return q.queueFor(ctx, map[string][][]byte{}, ids, append([]byte{kindEphemeral}, b...))
}

// Presence queues a user's new presence (m.presence, content as /sync
// shows it) for the appservices that asked for ephemeral events (MSC2409)
// and have a user joined to a room userID is joined to. Local changes
// (the client API) come here; PresenceMany takes another server's EDU.
// The appservice's own users' presence is its own doing and is not sent
// back to it. Best effort: a failure is logged.
func (q *Queue) Presence(ctx context.Context, userID string, content map[string]any) {
	q.PresenceMany(ctx, map[string]map[string]any{userID: content})
}

// PresenceMany is Presence for several users (user ID → content), as one
// federation m.presence EDU brings them: all are queued in one write, so
// an EDU costs federation's /send one commit, not one per user.
func (q *Queue) PresenceMany(ctx context.Context, updates map[string]map[string]any) {
	if len(updates) == 0 || !q.WantsEphemeral() {
		return
	}
	if err := q.queuePresence(ctx, updates); err != nil {
		slog.Info("appservice: queue presence", "users", len(updates), "err", err)
	}
}

func (q *Queue) queuePresence(ctx context.Context, updates map[string]map[string]any) error {
	users := make([]string, 0, len(updates))
	for u := range updates {
		users = append(users, u)
	}
	slices.Sort(users)
	services := q.reg.List()
	members := map[string][]string{} // room → local joined members, read once for the batch
	per := map[string][][]byte{}
	var ids []string
	var errs []error
	for _, userID := range users {
		rooms, err := q.events.JoinedRooms(userID)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", userID, err))
			continue
		}
		want := map[string]bool{}
		for _, roomID := range rooms {
			ms, ok := members[roomID]
			if !ok {
				ms, _, err = q.events.LocalJoinedAndAlias(roomID)
				if err != nil {
					continue // left meanwhile
				}
				members[roomID] = ms
			}
			for _, s := range services {
				if want[s.ID()] || !s.Reg.Ephemeral() || s.OwnsUser(userID) {
					continue
				}
				for _, m := range ms {
					if s.OwnsUser(m) {
						want[s.ID()] = true
						break
					}
				}
			}
		}
		if len(want) == 0 {
			continue
		}
		b, err := json.Marshal(map[string]any{"type": "m.presence", "sender": userID, "content": updates[userID]})
		if err != nil {
			return err
		}
		for _, s := range services { // registration order, not the map's
			if id := s.ID(); want[id] {
				if len(per[id]) == 0 {
					ids = append(ids, id)
				}
				per[id] = append(per[id], append([]byte{kindEphemeral}, b...))
			}
		}
	}
	if len(ids) > 0 {
		errs = append(errs, q.queueFor(ctx, per, ids, nil))
	}
	return errors.Join(errs...)
}

// QueueToDevice queues the to-device messages a local user sent to the
// devices of appservice users (MSC4203, with receive_ephemeral): each as
// {type, sender, content, to_user_id, to_device_id}, "*" expanded to the
// user's devices. The appservice's users never /sync, so this is how
// their devices receive them.
func (q *Queue) QueueToDevice(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage,
	devices func(userID string) ([]string, error)) error {
	per := map[string][][]byte{}
	var ids []string
	for _, s := range q.reg.List() {
		if !s.Reg.Ephemeral() {
			continue
		}
		for userID, byDevice := range messages {
			if !s.OwnsUser(userID) {
				continue
			}
			for dev, content := range byDevice {
				targets := []string{dev}
				if dev == "*" {
					var err error
					if targets, err = devices(userID); err != nil {
						return err
					}
				}
				for _, d := range targets {
					b, err := json.Marshal(map[string]any{"type": evType, "sender": sender, "content": content,
						"to_user_id": userID, "to_device_id": d})
					if err != nil {
						return err
					}
					if len(per[s.ID()]) == 0 {
						ids = append(ids, s.ID())
					}
					per[s.ID()] = append(per[s.ID()], append([]byte{kindToDevice}, b...))
				}
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return q.queueFor(ctx, per, ids, nil)
}

// queueFor queues per[id]'s entries, or v when per has none for id, for
// each of ids in one write, within each queue's bound.
func (q *Queue) queueFor(ctx context.Context, per map[string][][]byte, ids []string, v []byte) error {
	added := map[string]int{}
	q.mu.Lock()
	maxQueued := q.maxQueued
	q.mu.Unlock()
	if q.onQueueWrite != nil {
		q.onQueueWrite(ids)
	}
	q.beginWrites(ids)
	defer q.endWrites(ids)
	err := q.db.Update(ctx, func(tx *store.Tx) error {
		clear(added)
		for _, id := range ids {
			vs := per[id]
			if len(vs) == 0 {
				vs = [][]byte{v}
			}
			for _, v := range vs {
				if q.queued(id)+added[id] >= maxQueued {
					break
				}
				if _, err := putEntry(tx, id, v); err != nil {
					return err
				}
				added[id]++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	q.mu.Lock()
	for id, c := range added {
		q.counts[id] += c
	}
	q.mu.Unlock()
	for id := range added {
		q.kick(id)
	}
	return nil
}
