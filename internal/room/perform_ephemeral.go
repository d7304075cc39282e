package room

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// ChangeReceipt is the change-log kind for receipts.
const ChangeReceipt = "receipt"

// typingRoom is the in-memory typing state of one room. Typing is never
// stored: it is worthless after a restart (Client-Server API §"Typing
// Notifications").
type typingRoom struct {
	users     map[string]*time.Timer
	changedAt uint64 // ephemeral counter of the last change
}

// SetTyping starts or stops a user's typing notification; a start expires
// on its own after timeout. Expiry uses a timer, so nothing polls.
func (e *Engine) SetTyping(userID, roomID string, typing bool, timeout time.Duration) error {
	ok := false
	e.db.View(func(tx *store.Tx) error {
		if info, err := roomInfo(tx, roomID); err == nil {
			ok = membershipIn(tx, userID, info.NID).Membership == "join"
		}
		return nil
	})
	if !ok {
		return matrixerr.Forbidden("you are not joined to this room")
	}
	e.setTyping(userID, roomID, typing, timeout)
	return nil
}

func (e *Engine) setTyping(userID, roomID string, typing bool, timeout time.Duration) {
	changed := false
	defer func() { // after the unlock below
		if changed {
			e.emitTyping(roomID)
		}
	}()
	e.typingMu.Lock()
	defer e.typingMu.Unlock()
	r := e.typingRooms[roomID]
	if r == nil {
		r = &typingRoom{users: map[string]*time.Timer{}}
		e.typingRooms[roomID] = r
	}
	t, was := r.users[userID]
	if was {
		t.Stop()
		delete(r.users, userID)
	}
	if typing {
		if timeout <= 0 || timeout > 2*time.Minute {
			timeout = 30 * time.Second
		}
		r.users[userID] = time.AfterFunc(timeout, func() { e.setTyping(userID, roomID, false, 0) })
	}
	if was != typing {
		r.changedAt = e.notifier.Bump()
		changed = true
	}
}

// typingSince returns the users typing in a room if that changed after the
// ephemeral counter since. An initial sync gets the list only when someone
// is typing; an incremental one whenever it changed, so a stop (an empty
// list) reaches the others even from a token taken before anyone had typed
// (counter 0; Client-Server API §"Typing Notifications").
func (e *Engine) typingSince(roomID string, since uint64, initial bool) ([]string, bool) {
	e.typingMu.Lock()
	defer e.typingMu.Unlock()
	r := e.typingRooms[roomID]
	if r == nil || (!initial && r.changedAt <= since) {
		return nil, false
	}
	if initial && len(r.users) == 0 {
		return nil, false
	}
	users := make([]string, 0, len(r.users))
	for u := range r.users {
		users = append(users, u)
	}
	sort.Strings(users)
	return users, true
}

// Receipt is a stored read receipt.
type receipt struct {
	EventID  string `json:"event_id"`
	TS       int64  `json:"ts"`
	ThreadID string `json:"thread_id,omitempty"`
}

// SetReceipt records a receipt (Client-Server API §"Receipts"): m.read and
// m.read.private, optionally for a thread ("main" or a thread root). It
// reports whether the receipt moved: an m.read or m.read.private receipt
// for an event no later in the stream than the one the user's receipt of
// that type and thread already names is ignored, as Synapse ignores it,
// so that a client lagging behind another (or a server's late EDU) does
// not make read messages unread again. m.fully_read, which clients may
// move back on purpose, always moves.
func (e *Engine) SetReceipt(ctx context.Context, userID, roomID, typ, eventID, threadID string) (bool, error) {
	if typ != "m.read" && typ != "m.read.private" && typ != "m.fully_read" {
		return false, matrixerr.InvalidParam("unknown receipt type " + typ)
	}
	ts := time.Now().UnixMilli()
	moved := false
	err := e.db.Update(ctx, func(tx *store.Tx) error {
		moved = false // Update may run fn again
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return err
		}
		if membershipIn(tx, userID, info.NID).Membership != "join" {
			return matrixerr.Forbidden("you are not joined to this room")
		}
		nid := eventNID(tx, eventID)
		if nid == 0 {
			return matrixerr.NotFound("event not found")
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil || ev.RoomNID != info.NID {
			return matrixerr.NotFound("event not found")
		}
		// A 0x00 would split the receipt's key (store.ReceiptKey) into
		// other parts; a thread root named by an event's content may hold
		// one.
		if strings.IndexByte(threadID, 0) >= 0 || (threadID != "" && !e.receiptThreadHolds(tx, ev, threadID)) {
			return matrixerr.InvalidParam("the event is not in thread " + threadID)
		}
		key := store.ReceiptKey(info.NID, userID, typ, threadID)
		if typ != "m.fully_read" {
			var old receipt
			if v := tx.Get(store.Receipts, key); v != nil && json.Unmarshal(v, &old) == nil && eventNID(tx, old.EventID) >= nid {
				return nil
			}
		}
		b, _ := json.Marshal(receipt{EventID: eventID, TS: ts, ThreadID: threadID})
		if err := tx.Put(store.Receipts, key, b); err != nil {
			return err
		}
		c := store.Change{Kind: ChangeReceipt, RoomID: roomID, Key: userID}
		if typ == "m.read.private" {
			c.Localpart = userID // only its owner sees it
		}
		if _, err := tx.AppendChange(c); err != nil {
			return err
		}
		moved = true
		return nil
	})
	if err != nil {
		return false, err
	}
	if moved && typ == "m.read" {
		e.emitReceipt(roomID, userID, eventID, threadID, ts)
	}
	return moved, nil
}

// maxRelationHops bounds the walk up an event's relations in
// receiptThreadHolds: a reaction to an edit of a thread message takes two
// to reach the thread relation.
const maxRelationHops = 8

// receiptThreadHolds reports whether a receipt for ev may name threadID
// (receipts.yaml: 400 when "the event_id is not related to the
// thread_id"). "main" holds every event but a thread message, as before
// threads were followed further. A thread root holds what the walk up
// ev's relations reaches it by: an m.thread relation names the thread;
// any other relation leads to its parent (a reaction to a thread message
// is in the thread); an event with none is the top of the chain, so the
// root holds itself and what relates to it (a reference to it, a
// reaction to that), as Synapse accepts them and Complement's threaded
// receipts test sends them.
func (e *Engine) receiptThreadHolds(tx *store.Tx, ev *Event, threadID string) bool {
	if threadID == "main" {
		return threadOf(ev) == "main"
	}
	cur := ev
	for range maxRelationHops {
		rel := gjson.GetBytes(cur.PDU.Content(), "m\\.relates_to")
		parent := rel.Get("event_id").String()
		if rel.Get("rel_type").String() == "m.thread" && parent != "" {
			return threadID == parent
		}
		if parent == "" {
			return threadID == cur.ID
		}
		nid := eventNID(tx, parent)
		if nid == 0 {
			return false // the chain leads out of what this server holds
		}
		next, err := e.loadEvent(tx, nid)
		if err != nil || next.RoomNID != ev.RoomNID {
			return false
		}
		cur = next
	}
	return false
}

// threadOf is the thread an event belongs to for its notification: its
// thread root, or "main" (Client-Server API §"Threaded read receipts").
func threadOf(ev *Event) string {
	rel := gjson.GetBytes(ev.PDU.Content(), "m\\.relates_to")
	if rel.Get("rel_type").String() == "m.thread" {
		if root := rel.Get("event_id").String(); root != "" {
			return root
		}
	}
	return "main"
}

// receiptContent builds an m.receipt EDU content for the room: all
// receipts when users is nil, else only those users'. Private receipts are
// shown to their owner alone.
func receiptContent(tx *store.Tx, roomNID uint64, viewer string, users map[string]bool) map[string]map[string]map[string]any {
	out := map[string]map[string]map[string]any{}
	add := func(user, typ, _ string, v []byte) {
		if typ == "m.fully_read" || (typ == "m.read.private" && user != viewer) {
			return
		}
		var r receipt
		if json.Unmarshal(v, &r) != nil {
			return
		}
		if out[r.EventID] == nil {
			out[r.EventID] = map[string]map[string]any{}
		}
		if out[r.EventID][typ] == nil {
			out[r.EventID][typ] = map[string]any{}
		}
		entry := map[string]any{"ts": r.TS}
		if r.ThreadID != "" {
			entry["thread_id"] = r.ThreadID
		}
		out[r.EventID][typ][user] = entry
	}
	if users == nil {
		eachReceipt(tx, store.PutU64(roomNID), add)
		return out
	}
	// Only these users' ranges: the room's other receipts are not read.
	for u := range users {
		eachReceipt(tx, store.ReceiptsOf(roomNID, u), add)
	}
	return out
}

// eachReceipt calls fn with every receipt whose key (store.ReceiptKey)
// starts with prefix.
func eachReceipt(tx *store.Tx, prefix []byte, fn func(user, typ, thread string, v []byte)) {
	c := tx.Cursor(store.Receipts)
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		if parts := splitKey(string(k[8:])); len(parts) == 3 {
			fn(parts[0], parts[1], parts[2], v)
		}
	}
}

func splitKey(k string) []string {
	var out []string
	start := 0
	for i := 0; i < len(k); i++ {
		if k[i] == 0 {
			out = append(out, k[start:i])
			start = i + 1
		}
	}
	return append(out, k[start:])
}
