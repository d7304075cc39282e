package room

import (
	"sort"

	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// relationsPrefix is the key prefix of every child of one event in the
// relations index: roomNID ‖ parentNID.
func relationsPrefix(roomNID, parentNID uint64) []byte {
	return store.NIDKey(roomNID, store.PutU64(parentNID))
}

// childHeader is what aggregation needs of a child event without parsing
// it: its record flags and sender (gjson reads one field of the JSON).
func childHeader(tx *store.Tx, nid uint64) (flags byte, sender string, ok bool) {
	b := tx.Get(store.Events, store.PutU64(nid))
	if b == nil {
		return 0, "", false
	}
	ev, err := decodeEvent(nid, b)
	if err != nil {
		return 0, "", false
	}
	return ev.Flags, gjson.GetBytes(ev.JSON, "sender").String(), true
}

// maxBundleDepth lets a bundled event (a thread's latest reply) carry its
// own edits, but no deeper: a chain of events each relating to the last
// must not make serving one event walk the whole chain.
const maxBundleDepth = 2

// bundle adds the bundled aggregations of ev's children to ce.Unsigned
// (Client-Server API §"Aggregations of child events": m.thread, m.replace
// since v1.7, m.reference), counting only children the viewer may see.
// An event without children costs one Seek; one with children costs one
// prefix scan of the relations index, loading in full only the events that
// are served (the thread's latest event, the latest edit).
func (e *Engine) bundle(tx *store.Tx, ev *Event, v ClientView, ce *ClientEvent) {
	prefix := relationsPrefix(ev.RoomNID, ev.NID)
	c := tx.Cursor(store.Relations)
	k, val := c.Seek(prefix)
	if k == nil || !hasPrefix(k, prefix) {
		return
	}
	h := e.history(tx, v.Viewer, ev.RoomNID)
	parentSender := string(ev.PDU.SenderID())
	// Edits apply to message events that were not redacted (§"Event
	// replacements": a state event cannot be replaced, and a redacted
	// original keeps no edits).
	editable := ev.PDU.StateKey() == nil && ev.Flags&flagRedacted == 0
	var (
		threadCount  int
		threadLatest uint64
		participated = parentSender == v.Viewer
		edit         *Event
		refs         []map[string]string
	)
	for ; k != nil && hasPrefix(k, prefix); k, val = c.Next() {
		nid := store.U64(k[len(prefix):])
		rel := string(val)
		if rel != "m.thread" && rel != "m.replace" && rel != "m.reference" {
			continue
		}
		if !h.canSee(nid) {
			continue
		}
		flags, sender, ok := childHeader(tx, nid)
		if !ok || flags&(flagRedacted|flagRejected|flagOutlier) != 0 {
			continue // a redacted child lost its relation
		}
		switch rel {
		case "m.thread":
			threadCount++
			threadLatest = nid // keys ascend, so the last seen is the newest
			participated = participated || sender == v.Viewer
		case "m.replace":
			if !editable || sender != parentSender {
				continue // only the original sender may edit (§"Validity of replacement events")
			}
			child, err := e.loadEvent(tx, nid)
			if err != nil || child.PDU.Type() != ev.PDU.Type() || child.PDU.StateKey() != nil {
				continue
			}
			if edit == nil || newerEdit(child, edit) {
				edit = child
			}
		case "m.reference":
			child, err := e.loadEvent(tx, nid)
			if err != nil {
				continue
			}
			refs = append(refs, map[string]string{"event_id": child.ID})
		}
	}
	rels := map[string]any{}
	v.depth++
	if threadCount > 0 {
		if latest, err := e.loadEvent(tx, threadLatest); err == nil {
			rels["m.thread"] = map[string]any{
				"latest_event":              e.clientEvent(tx, latest, v),
				"count":                     threadCount,
				"current_user_participated": participated,
			}
		}
	}
	if edit != nil {
		rels["m.replace"] = e.clientEvent(tx, edit, v)
	}
	if len(refs) > 0 {
		rels["m.reference"] = map[string]any{"chunk": refs}
	}
	if len(rels) > 0 {
		ce.Unsigned["m.relations"] = rels
	}
}

// newerEdit applies the spec's order of replacements: the later
// origin_server_ts wins, ties go to the lexicographically larger event ID.
func newerEdit(a, b *Event) bool {
	ta, tb := a.PDU.OriginServerTS(), b.PDU.OriginServerTS()
	if ta != tb {
		return ta > tb
	}
	return a.ID > b.ID
}

// ThreadsRequest asks for a page of a room's thread roots (Client-Server
// API §"Threading": GET /rooms/{roomId}/threads).
type ThreadsRequest struct {
	UserID, Device, RoomID string
	// Participated keeps only threads the user started or replied in.
	Participated bool
	// From is a position from a previous page: only threads whose latest
	// visible reply is older are returned. 0 starts at the newest.
	From  uint64
	Limit int
}

// Threads returns thread roots ordered by their latest visible reply,
// newest first, with their bundled aggregations, and the position to
// continue from (0 when there are no more).
//
// The list is built by one prefix scan of the room's relations; there is
// no separate index of thread activity, which a personal server's rooms
// do not need.
func (e *Engine) Threads(req ThreadsRequest) ([]ClientEvent, uint64, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, 100)
	out := []ClientEvent{}
	var next uint64
	err := e.db.View(func(tx *store.Tx) error {
		info, h, err := e.readable(tx, req.UserID, req.RoomID)
		if err != nil {
			return err
		}
		type thread struct {
			root, latest uint64
			participated bool
		}
		threads := map[uint64]*thread{}
		prefix := store.PutU64(info.NID)
		c := tx.Cursor(store.Relations)
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			if string(v) != "m.thread" || len(k) != 24 {
				continue
			}
			root, nid := store.U64(k[8:16]), store.U64(k[16:])
			if !h.canSee(nid) || !h.canSee(root) {
				continue
			}
			flags, sender, ok := childHeader(tx, nid)
			if !ok || flags&(flagRedacted|flagRejected|flagOutlier) != 0 {
				continue
			}
			t := threads[root]
			if t == nil {
				t = &thread{root: root}
				threads[root] = t
			}
			t.latest = max(t.latest, nid)
			t.participated = t.participated || sender == req.UserID
		}
		list := make([]*thread, 0, len(threads))
		for _, t := range threads {
			if req.From != 0 && t.latest >= req.From {
				continue
			}
			if req.Participated && !t.participated {
				if _, sender, ok := childHeader(tx, t.root); !ok || sender != req.UserID {
					continue
				}
			}
			list = append(list, t)
		}
		sort.Slice(list, func(i, j int) bool { return list[i].latest > list[j].latest })
		view := ClientView{Viewer: req.UserID, ViewerDevice: req.Device, NowMs: nowMs()}
		for i, t := range list {
			if i == limit {
				next = list[i-1].latest
				break
			}
			ev, err := e.loadEvent(tx, t.root)
			if err != nil {
				return err
			}
			if ev.Flags&flagRejected != 0 {
				continue
			}
			out = append(out, e.clientEvent(tx, ev, view))
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, next, nil
}
