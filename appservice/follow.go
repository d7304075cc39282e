package appservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// The follower: from the stream into the per-appservice queues.

// follow queues new events until ctx ends, woken by the notifier.
func (q *Queue) follow(ctx context.Context) {
	for {
		pos, eph := q.waiter.Pos()
		done, err := q.step(ctx, pos)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			slog.Error("appservice queue: queueing events", "err", err)
			t := time.NewTimer(q.minBackoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		q.kickE2EE(pos)
		if done {
			if err := q.waiter.Wait(ctx, pos, eph); err != nil {
				return
			}
		}
	}
}

var errBatchFull = errors.New("batch full")

// interested reports whether appservice s wants se (Application Service
// API §"Pushing events": a namespaced sender or member, a member event
// about a namespaced user, the room ID or its alias).
func (s *Service) interested(se *room.StreamEvent, f *roomFacts) bool {
	if s.OwnsUser(se.Event.Sender) {
		return true
	}
	if se.Event.Type == "m.room.member" && se.Event.StateKey != nil && s.OwnsUser(*se.Event.StateKey) {
		return true
	}
	if f.hasMember(s) {
		return true
	}
	if m, _ := matches(s.Reg.Namespaces.Rooms, se.RoomID); m {
		return true
	}
	if f.alias != "" {
		if m, _ := matches(s.Reg.Namespaces.Aliases, f.alias); m {
			return true
		}
	}
	return false
}

// roomFacts returns roomID's facts, from the cache or the store.
func (q *Queue) roomFacts(roomID string) (*roomFacts, error) {
	if f := q.facts[roomID]; f != nil {
		return f, nil
	}
	members, alias, err := q.events.LocalJoinedAndAlias(roomID)
	if err != nil {
		return nil, err
	}
	if q.facts == nil || len(q.facts) >= maxRoomFacts {
		q.facts = map[string]*roomFacts{}
	}
	f := &roomFacts{members: members, alias: alias}
	q.facts[roomID] = f
	return f, nil
}

// step queues the events after the stored position up to pos (at most
// followBatch of them) and moves the position in the same write.
func (q *Queue) step(ctx context.Context, pos uint64) (done bool, err error) {
	var from uint64
	q.db.View(func(tx *store.Tx) error { from = store.U64(tx.Get(store.AppserviceMeta, keyPos)); return nil })
	from = max(from, q.scanned)
	if from >= pos {
		return true, nil
	}
	services := q.reg.List()
	if len(services) == 0 {
		q.scanned = pos // nobody to tell: nothing to read
		q.facts = nil   // nor to keep up to date
		return true, nil
	}
	type entry struct {
		id  string
		v   []byte
		svc *Service // the registration it is for: one added again meanwhile gets none of it
	}
	var entries []entry
	last, n := pos, 0
	err = q.events.EventsAfter(from, pos, func(se *room.StreamEvent) error {
		if n == followBatch {
			last = se.Pos - 1
			return errBatchFull
		}
		n++
		if se.Event.StateKey != nil && (se.Event.Type == "m.room.member" || se.Event.Type == "m.room.canonical_alias") {
			delete(q.facts, se.RoomID) // read again after this event
		}
		f, err := q.roomFacts(se.RoomID)
		if err != nil {
			return err
		}
		var v []byte
		for _, s := range services {
			if se.Pos <= s.AddedPos || !s.interested(se, f) {
				continue
			}
			if v == nil {
				b, err := json.Marshal(se.Event)
				if err != nil {
					return fmt.Errorf("encode event: %w", err)
				}
				v = append([]byte{kindEvent}, b...)
			}
			entries = append(entries, entry{s.ID(), v, s})
		}
		return nil
	})
	if err != nil && !errors.Is(err, errBatchFull) {
		return false, fmt.Errorf("events after %d: %w", from, err)
	}
	if len(entries) == 0 {
		q.scanned = last
		return false, nil
	}
	// An appservice that is keeping up gets its events now, while they
	// are written (handoff.go).
	perID := map[string][]json.RawMessage{}
	svcOf := map[string]*Service{}
	for _, e := range entries {
		perID[e.id] = append(perID[e.id], json.RawMessage(e.v[1:]))
		svcOf[e.id] = e.svc
	}
	handed := map[string]*handoff{}
	q.mu.Lock()
	for id, evs := range perID {
		if q.canHandOff(id, len(evs)) && q.reg.Get(id) == svcOf[id] {
			h := &handoff{events: evs, written: make(chan struct{})}
			q.handoffs[id], handed[id] = h, h
		}
	}
	q.mu.Unlock()
	for id := range handed {
		q.kick(id)
	}
	added := map[string]int{}
	dropped := map[string]uint64{}
	lastSeq := map[string]uint64{}
	err = q.followWrite(ctx, func(tx *store.Tx) error {
		clear(added)
		clear(dropped)
		clear(lastSeq)
		q.mu.Lock()
		counts := map[string]int{}
		for id, c := range q.counts {
			counts[id] = c
		}
		maxQueued := q.maxQueued
		q.mu.Unlock()
		for _, e := range entries {
			if q.reg.Get(e.id) != e.svc {
				continue // removed (or added again) meanwhile
			}
			if counts[e.id]+added[e.id] >= maxQueued {
				dropped[e.id]++
				continue
			}
			seq, err := putEntry(tx, e.id, e.v)
			if err != nil {
				return err
			}
			added[e.id]++
			lastSeq[e.id] = seq
		}
		for id, d := range dropped {
			st, err := loadState(tx, id)
			if err != nil {
				return err
			}
			st.Dropped += d
			if err := saveState(tx, id, st); err != nil {
				return err
			}
		}
		return tx.Put(store.AppserviceMeta, keyPos, store.PutU64(max(last, from)))
	})
	q.mu.Lock()
	if err == nil {
		for id, c := range added {
			q.counts[id] += c
		}
	}
	for id, h := range handed {
		if err == nil {
			h.upTo = lastSeq[id]
		}
		h.done = true
		close(h.written)
	}
	q.mu.Unlock()
	if err != nil {
		return false, err
	}
	for id := range added {
		if handed[id] == nil {
			q.kick(id)
		}
	}
	for id, d := range dropped {
		slog.Warn("appservice queue full: events dropped", "appservice", id, "dropped", d)
	}
	return false, nil
}

// followWrite is the follower's write; tests make it fail through
// q.beforeWrite.
func (q *Queue) followWrite(ctx context.Context, fn func(*store.Tx) error) error {
	if q.beforeWrite != nil {
		if err := q.beforeWrite(); err != nil {
			return err
		}
	}
	return q.db.Update(ctx, fn)
}

func putEntry(tx *store.Tx, id string, v []byte) (uint64, error) {
	seq, err := tx.NextID(store.AppserviceQueue)
	if err != nil {
		return 0, err
	}
	return seq, tx.Put(store.AppserviceQueue, append(store.Key(id, ""), store.PutU64(seq)...), v)
}

func loadState(tx *store.Tx, id string) (queueState, error) {
	var st queueState
	if b := tx.Get(store.AppserviceMeta, stateKey(id)); b != nil {
		if err := json.Unmarshal(b, &st); err != nil {
			return st, fmt.Errorf("appservice %s: decode queue state: %w", id, err)
		}
	}
	return st, nil
}

func saveState(tx *store.Tx, id string, st queueState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return tx.Put(store.AppserviceMeta, stateKey(id), b)
}
