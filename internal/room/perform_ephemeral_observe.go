package room

import (
	"sync"
	"sync/atomic"
)

// Observing ephemeral events. Typing and read receipts reach the engine
// the same way whoever made them — a local user through the client API,
// another server's user through a federation EDU — so the engine is the
// one place that can hand both to a consumer that is not a /sync: the
// application services (MSC2409). The consumer is called after the
// change, outside any store transaction.

// EphemeralFunc receives an ephemeral event of roomID in client format
// ({"type", "room_id", "content"}). It must not call back into typing.
type EphemeralFunc func(roomID string, ev map[string]any)

type ephemeralObserver struct {
	fn atomic.Pointer[EphemeralFunc]
	// typing holds the rooms whose typing set is being handed off now.
	// One hand-off per room at a time, each reading the set afresh, so
	// the last one carries the current set; a change meanwhile marks the
	// room and returns at once (the running hand-off goes round again),
	// and rooms do not wait for each other — a hand-off is a queue write,
	// an fsync, and a remote typing change waits for it inside
	// federation's /send.
	mu     sync.Mutex
	typing map[string]*typingEmit
}

// typingEmit is one room's hand-off in progress.
type typingEmit struct {
	again bool // the set changed since the running hand-off read it
}

// OnEphemeral sets the function that receives typing changes and public
// read receipts (m.read), local and remote alike; nil stops it.
func (e *Engine) OnEphemeral(fn EphemeralFunc) {
	if fn == nil {
		e.observer.fn.Store(nil)
		return
	}
	e.observer.fn.Store(&fn)
}

// emitTyping hands the room's current typing set on (m.typing lists who
// types now: Client-Server API §"m.typing").
func (e *Engine) emitTyping(roomID string) {
	fn := e.observer.fn.Load()
	if fn == nil {
		return
	}
	o := &e.observer
	o.mu.Lock()
	if r := o.typing[roomID]; r != nil {
		r.again = true // the running hand-off sends the set as it is then
		o.mu.Unlock()
		return
	}
	r := &typingEmit{}
	if o.typing == nil {
		o.typing = map[string]*typingEmit{}
	}
	o.typing[roomID] = r
	o.mu.Unlock()
	for {
		users, _ := e.typingSince(roomID, 0, false)
		if users == nil {
			users = []string{}
		}
		(*fn)(roomID, map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": users}})
		o.mu.Lock()
		if !r.again {
			delete(o.typing, roomID)
			o.mu.Unlock()
			return
		}
		r.again = false
		o.mu.Unlock()
	}
}

// emitReceipt hands a public read receipt on, as the one-receipt
// m.receipt event /sync would show (Client-Server API §"m.receipt").
func (e *Engine) emitReceipt(roomID, userID, eventID, threadID string, ts int64) {
	fn := e.observer.fn.Load()
	if fn == nil {
		return
	}
	data := map[string]any{"ts": ts}
	if threadID != "" {
		data["thread_id"] = threadID
	}
	(*fn)(roomID, map[string]any{"type": "m.receipt", "room_id": roomID,
		"content": map[string]any{eventID: map[string]any{"m.read": map[string]any{userID: data}}}})
}
