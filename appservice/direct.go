package appservice

import (
	"context"
	"encoding/json"

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

// QueueEphemeral queues an ephemeral event (m.typing, m.receipt) of roomID
// for the appservices that asked for them (MSC2409, receive_ephemeral)
// and have a user among members or claim the room. Best effort, like
// every ephemeral event.
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
				if err := putEntry(tx, id, v); err != nil {
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
