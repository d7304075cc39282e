package push

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"maunium.net/go/mautrix/pushrules"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// record is one entry of the notification log (bucket pushlog), decoded
// from either layout (see recordCompact); EventID is set only by records
// of the first, JSON layout.
type record struct {
	EventID   string                    `json:"e"`
	Actions   pushrules.PushActionArray `json:"a"`
	Highlight bool                      `json:"h,omitempty"`
	Thread    string                    `json:"t"`
	TS        int64                     `json:"ts"`
}

func logKey(userID, roomID string, pos uint64) []byte {
	return append(store.Key(userID, roomID, ""), store.PutU64(pos)...)
}

func hasPrefix(b, p []byte) bool { return len(b) >= len(p) && string(b[:len(p)]) == string(p) }

// Count is a pair of unread counts.
type Count struct {
	Notifications int `json:"notification_count"`
	Highlights    int `json:"highlight_count"`
}

// Counts are one user's unread counts in one room: All over every
// notification, Main over the main timeline, Threads per thread root
// (nil when no thread has one).
type Counts struct {
	All, Main Count
	Threads   map[string]Count
}

// countsTx reads the counts of the notifications after the user's read
// receipts: an unthreaded receipt covers every thread, a threaded one its
// thread (Client-Server API §"Receiving notifications").
// It continues from out, which covers the entries up to after, and
// returns the position of the last entry it read.
func countsTx(tx *store.Tx, userID, roomID string, read map[string]uint64, out Counts, after, limit uint64) (Counts, uint64, error) {
	prefix := store.Key(userID, roomID, "")
	c := tx.Cursor(store.PushLog)
	last := max(after, read[""])
	for k, v := c.Seek(append(prefix, store.PutU64(last+1)...)); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		pos := store.U64(k[len(prefix):])
		if pos > limit {
			break // written after the caller's snapshot of the evaluator
		}
		last = pos
		r, err := decodeRecord(v, false)
		if err != nil {
			return out, last, fmt.Errorf("push: decode notification: %w", err)
		}
		if pos <= read[r.Thread] {
			continue
		}
		out.add(r.Thread, r.Highlight)
	}
	return out, last, nil
}

// add counts one notification in thread ("main" or a root).
func (c *Counts) add(thread string, highlight bool) {
	one := func(n *Count) {
		n.Notifications++
		if highlight {
			n.Highlights++
		}
	}
	one(&c.All)
	if thread == "main" {
		one(&c.Main)
		return
	}
	if c.Threads == nil {
		c.Threads = map[string]Count{} // made here: most rooms have no thread
	}
	t := c.Threads[thread]
	one(&t)
	c.Threads[thread] = t
}

// countCache keeps each (user, room)'s counts with the receipts they were
// counted against and how far the log was read, so a /sync only reads the
// notifications that arrived since the last one; without it every sync of
// a room nobody reads would re-read its whole log.
type countCache struct {
	mu      sync.Mutex
	entries map[[2]string]*cachedCounts
}

type cachedCounts struct {
	read   map[string]uint64
	at     uint64 // a stream position at which read was the user's receipts (CountsMem)
	upTo   uint64
	counts Counts
}

// advance brings the entries counted up to from (the stored position
// before a store) up to to, with the batch that store wrote: the log's
// records in (from, to] are exactly the batch's results, so an entry's
// counts then hold as a scan of the log up to to would give them (as
// countsTx counts) and the next /sync needs no scan (CountsMem). Entries
// counted to any other position are left to be read again.
func (c *countCache) advance(batch []evaluated, from, to uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range batch {
		if e.pe.Pos <= from || e.pe.Pos > to {
			continue
		}
		for _, r := range e.results {
			if n := c.entries[[2]string{r.UserID, e.pe.RoomID}]; n != nil && n.upTo == from &&
				e.pe.Pos > n.read[""] && e.pe.Pos > n.read[e.pe.ThreadRoot] {
				n.counts.add(e.pe.ThreadRoot, r.Highlight) // readers take clones, under c.mu
			}
		}
	}
	for _, n := range c.entries {
		if n.upTo == from {
			n.upTo = to
		}
	}
}

// maxCachedCounts bounds the cache; past it the cache starts over.
const maxCachedCounts = 4096

// clone copies c so that adding to either leaves the other as it was. An
// empty Threads stays nil (add makes it), so the usual room without a
// thread costs no map per /sync.
func (c Counts) clone() Counts {
	if len(c.Threads) == 0 {
		c.Threads = nil
	} else {
		c.Threads = maps.Clone(c.Threads)
	}
	return c
}

// Live holds the notifications of events the evaluator had not stored
// yet when a /sync looked (see Service.Live).
type Live struct {
	// Evaluated is the position up to which the log is complete; the
	// hits cover (Evaluated, the sync's position].
	Evaluated uint64
	Hits      map[string][]Hit // room ID → hits in stream order; nil for none
	// stored: Evaluated was read from the evaluator's stored position, so
	// every transaction begun after Live holds the log complete up to it
	// (CountsIn may then remember it counted that far). Not so for a
	// service that is not running, whose Evaluated is the caller's.
	stored bool
}

// hit adds pe's result r. Hits is made by the first: most Lives of a
// woken long poll hold one room's hits, many none.
func (l *Live) hit(pe *room.PushEvent, r Result) {
	if l.Hits == nil {
		l.Hits = map[string][]Hit{}
	}
	l.Hits[pe.RoomID] = append(l.Hits[pe.RoomID], Hit{Pos: pe.Pos, Thread: pe.ThreadRoot, Highlight: r.Highlight})
}

// Hit is one live notification.
type Hit struct {
	Pos       uint64
	Thread    string
	Highlight bool
}

// liveLimit is how far the evaluator may trail before /sync waits for it
// rather than evaluating the gap itself (after a restart with a backlog).
const liveLimit = 512

// liveWait is how long /sync waits for the evaluator to store the counts
// of the events it is about to return before computing them itself.
const liveWait = 20 * time.Millisecond

// LiveWait is liveWait for long polls that wait on Ready.
const LiveWait = liveWait

// Live returns the log's completeness point and, for the events after it
// up to pos, userID's notifications computed on the spot with the same
// rules. With it /sync counts exactly the events its timeline shows
// without waiting for the evaluator's commit, and needs no change record
// of its own: the event's commit is what wakes the long poll.
func (s *Service) Live(ctx context.Context, userID string, pos uint64) (*Live, error) {
	if !s.running.Load() {
		return &Live{Evaluated: pos}, nil
	}
	done := s.evaluated()
	if pos > done+liveLimit {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s.WaitEvaluated(ctx, pos)
		cancel()
		done = s.evaluated()
	}
	if done < pos && !s.inMemory(pos) {
		// The evaluator is usually a moment behind the commit that woke
		// this /sync, and evaluates each event once for every member;
		// waiting briefly for its results (published before they are
		// stored) is far cheaper than every woken /sync evaluating the
		// same events again for its own user. (A long poll woken through
		// Ready finds them published: no timer for it.)
		wctx, cancel := context.WithTimeout(ctx, liveWait)
		s.waitInMemory(wctx, pos)
		cancel()
	}
	s.doneMu.Lock()
	done, mem, pending := s.donePos, s.memPos, s.pending
	s.doneMu.Unlock()
	live := &Live{Evaluated: min(done, pos), stored: true}
	if done >= pos {
		return live, nil
	}
	if mem >= pos {
		for _, e := range pending {
			if e.pe.Pos <= done || e.pe.Pos > pos {
				continue
			}
			if r, ok := resultFor(e.results, userID); ok {
				live.hit(e.pe, r)
			}
		}
		return live, nil
	}
	err := s.rooms.PushEventsFor(userID, done, pos, func(pe *room.PushEvent) error {
		res, err := s.eval.Evaluate(pe)
		if err != nil {
			return err
		}
		if r, ok := resultFor(res, userID); ok {
			live.hit(pe, r)
		}
		return nil
	})
	return live, err
}

// AwaitCounts waits, briefly, until the evaluator has published the
// results of every event up to pos.
func (s *Service) AwaitCounts(ctx context.Context, pos uint64) {
	if !s.running.Load() || s.inMemory(pos) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, liveWait)
	defer cancel()
	s.waitInMemory(ctx, pos)
}

// RoomsNotified is RoomsNotifiedIn in a read transaction of its own.
func (s *Service) RoomsNotified(userID string, from uint64, live *Live) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *store.Tx) error {
		out = RoomsNotifiedIn(tx, userID, from, live, nil)
		return nil
	})
	return out, err
}

// RoomsNotifiedIn lists the rooms in which userID got notifications from
// events in (from, live's position]: from the log as tx sees it, and from
// live's hits. With among non-nil only those rooms' log is read: a /sync
// passes the rooms whose timeline moved after from (room.SyncRooms'
// Active), since a notification is logged at its event's position in
// the room's timeline, and a user in hundreds of rooms is spared a seek
// in each of the others.
func RoomsNotifiedIn(tx *store.Tx, userID string, from uint64, live *Live, among []string) []string {
	seen := map[string]bool{}
	var out []string
	addRoom := func(id string) {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	// One seek per room the user was ever notified in: the log is keyed
	// by user and room, and a feed in stream order per user would cost a
	// second write per recipient of every message (Issue 15).
	c := tx.Cursor(store.PushLog)
	var logged []string
	if from < live.Evaluated {
		// Only then can the log hold an entry in (from, Evaluated]: a long
		// poll's span is usually past what the evaluator has stored, and
		// the walk cost the seeks of every room for nothing.
		logged = among
		if among == nil {
			logged = loggedRooms(tx, userID)
		}
	}
	for _, roomID := range logged {
		prefix := store.Key(userID, roomID, "")
		k, _ := c.Seek(logKey(userID, roomID, from+1))
		if k != nil && hasPrefix(k, prefix) && store.U64(k[len(prefix):]) <= live.Evaluated {
			addRoom(roomID)
		}
	}
	for id, hits := range live.Hits {
		if len(hits) > 0 && hits[len(hits)-1].Pos > from {
			addRoom(id)
		}
	}
	return out
}

// Counts is CountsIn in a read transaction of its own.
func (s *Service) Counts(userID, roomID string, live *Live) (Counts, error) {
	var out Counts
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		out, err = s.CountsIn(tx, userID, roomID, live)
		return err
	})
	return out, err
}

// CountsIn returns the user's unread counts in a room as tx sees the
// receipts and the log: the log up to live.Evaluated plus live's hits
// (nil live: the log as it stands). /sync calls it inside the
// transaction that builds the rest of its response.
func (s *Service) CountsIn(tx *store.Tx, userID, roomID string, live *Live) (Counts, error) {
	read := room.ReadUpToIn(tx, userID, roomID)
	limit := uint64(1<<64 - 1)
	if live != nil {
		limit = live.Evaluated
	}
	key := [2]string{userID, roomID}
	start, after := Counts{}, uint64(0)
	s.counts.mu.Lock()
	c := s.counts.entries[key]
	if c != nil && maps.Equal(c.read, read) && c.upTo <= limit {
		start, after = c.counts.clone(), c.upTo
		c.at = max(c.at, tx.Pos())
	} else {
		c = nil
	}
	s.counts.mu.Unlock()
	out := start
	if c == nil || after < limit {
		// The log past what the cache counted. The scan reads every
		// entry up to limit; with live.stored the evaluator had stored
		// its results up to limit before this transaction began, so the
		// cache may say it counted up to limit, and the next /sync at the
		// same stored position (every poll of a room between two stores,
		// 50 ms apart while messages arrive) skips the seek.
		var upTo uint64
		var err error
		out, upTo, err = countsTx(tx, userID, roomID, read, start, after, limit)
		if err != nil {
			return Counts{}, err
		}
		if live != nil && live.stored {
			upTo = max(upTo, limit)
		}
		s.counts.mu.Lock()
		if s.counts.entries == nil || len(s.counts.entries) >= maxCachedCounts {
			s.counts.entries = map[[2]string]*cachedCounts{}
		}
		s.counts.entries[key] = &cachedCounts{read: read, at: tx.Pos(), upTo: upTo, counts: out.clone()}
		s.counts.mu.Unlock()
	}
	if live != nil {
		for _, h := range live.Hits[roomID] {
			if h.Pos > read[""] && h.Pos > read[h.Thread] {
				out.add(h.Thread, h.Highlight)
			}
		}
	}
	return out, nil
}

// CountsMem is CountsIn without a transaction, for a /sync of the span
// (since, now] that holds no receipt (a span of shape, room.SpanShape,
// or one whose change kinds have none): the user's receipts at now are
// those CountsIn last read for the room if it read them at a position
// from since on (receipts take stream positions, so none moved in
// between), and the log needs no read if CountsIn had counted it up to
// live's position. It reports false when either does not hold.
func (s *Service) CountsMem(userID, roomID string, since, now uint64, live *Live) (Counts, bool) {
	s.counts.mu.Lock()
	c := s.counts.entries[[2]string{userID, roomID}]
	if c == nil || c.at < since || live == nil || c.upTo != live.Evaluated {
		s.counts.mu.Unlock()
		return Counts{}, false
	}
	c.at = max(c.at, now)
	out, read := c.counts.clone(), c.read
	s.counts.mu.Unlock()
	for _, h := range live.Hits[roomID] {
		if h.Pos > read[""] && h.Pos > read[h.Thread] {
			out.add(h.Thread, h.Highlight)
		}
	}
	return out, true
}

// Notification is one entry of GET /notifications.
type Notification struct {
	Pos     uint64
	RoomID  string
	Actions pushrules.PushActionArray
	Read    bool
	TS      int64
	thread  string
}

// Notifications lists the user's notifications newest first, starting
// below position from (0: the newest), at most limit, only highlights if
// asked (Client-Server API §"GET /notifications"). next is the position to
// pass as from for the following page, 0 at the end.
func (s *Service) Notifications(userID string, from uint64, limit int, onlyHighlight bool) ([]Notification, uint64, error) {
	s.storeEvaluated() // store.go
	var out []Notification
	var next uint64
	reads := map[string]map[string]uint64{}
	err := s.db.View(func(tx *store.Tx) error {
		rooms := loggedRooms(tx, userID)
		// Each room's newest notifications below from, at most limit of
		// them (no page can take more from one room), merged by stream
		// position: positions are unique across rooms.
		for _, roomID := range rooms {
			if err := newestInRoom(tx, userID, roomID, from, limit, onlyHighlight, &out); err != nil {
				return err
			}
		}
		slices.SortFunc(out, func(a, b Notification) int { return cmp.Compare(b.Pos, a.Pos) })
		if len(out) < limit {
			return nil
		}
		out = out[:limit]
		// A next page exists when any notification, of any kind, is older
		// than the last one returned.
		last := out[len(out)-1].Pos
		c := tx.Cursor(store.PushLog)
		for _, roomID := range rooms {
			prefix := store.Key(userID, roomID, "")
			c.Seek(logKey(userID, roomID, last))
			if k, _ := c.Prev(); k != nil && hasPrefix(k, prefix) {
				next = last
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	// Receipts are read after the log, not inside its transaction: nested
	// bbolt read transactions can deadlock against a waiting writer.
	for i := range out {
		n := &out[i]
		if reads[n.RoomID] == nil {
			if reads[n.RoomID], err = s.rooms.ReadUpTo(userID, n.RoomID); err != nil {
				return nil, 0, err
			}
		}
		n.Read = n.Pos <= reads[n.RoomID][""] || n.Pos <= reads[n.RoomID][n.thread]
	}
	return out, next, nil
}

// loggedRooms lists the rooms in which userID has notifications in the
// log, one seek per room.
func loggedRooms(tx *store.Tx, userID string) []string {
	var rooms []string
	prefix := store.Key(userID, "")
	c := tx.Cursor(store.PushLog)
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix) && len(k) >= len(prefix)+9; {
		roomID := string(k[len(prefix) : len(k)-9])
		rooms = append(rooms, roomID)
		k, _ = c.Seek(store.Key(userID, roomID+"\x01"))
	}
	return rooms
}

// newestInRoom appends to out the user's newest notifications in one room
// below position from (0: from the newest), at most limit, only
// highlights if asked.
func newestInRoom(tx *store.Tx, userID, roomID string, from uint64, limit int, onlyHighlight bool, out *[]Notification) error {
	prefix := store.Key(userID, roomID, "")
	c := tx.Cursor(store.PushLog)
	var k, v []byte
	if from == 0 {
		if k, _ = c.Seek(store.Key(userID, roomID+"\x01")); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	} else {
		c.Seek(logKey(userID, roomID, from))
		k, v = c.Prev()
	}
	for n := 0; n < limit && k != nil && hasPrefix(k, prefix); k, v = c.Prev() {
		// With only=highlight most records are skipped: their actions
		// are decoded only once one is kept.
		r, err := decodeRecord(v, !onlyHighlight)
		if err == nil && onlyHighlight && r.Highlight {
			r, err = decodeRecord(v, true)
		}
		if err != nil {
			continue // as before: an unreadable record is skipped
		}
		if onlyHighlight && !r.Highlight {
			continue
		}
		pos := store.U64(k[len(prefix):])
		*out = append(*out, Notification{Pos: pos, RoomID: roomID, Actions: r.Actions, TS: r.TS, thread: r.Thread})
		n++
	}
	return nil
}
