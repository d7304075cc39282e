package room

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/store"
)

// Event flags kept beside the JSON.
const (
	flagRedacted   byte = 1 << iota // JSON is the redacted form
	flagRejected                    // failed auth; kept for the DAG, never served
	flagOutlier                     // not part of the timeline (federation)
	flagRelay                       // another server's event this server relays (send_join/leave/knock)
	flagStateless                   // an outlier whose state before is unknown (StateBefore unset)
	flagHistorical                  // backfilled: placed before the room's first event (ingest_backfill.go)
	flagDelivered                   // a local event the resident server already has (our send_join): never sent again
)

// Event is a stored room event. Its NID is the stream position at which it
// was appended, so stream order and NID order are the same thing.
type Event struct {
	NID         uint64
	RoomNID     uint64
	Version     gomatrixserverlib.RoomVersion // kept per event so it parses alone
	ID          string                        // kept because computing it means redacting and hashing
	Flags       byte
	StateBefore uint64 // snapshot NID of the room state before this event
	RedactedBy  uint64 // NID of the redaction that redacted it, if any
	Replaces    uint64 // for state events: the NID of the state it replaced
	TxnDevice   string // the sending client session (once the device) and its txn ID, for unsigned.transaction_id
	TxnID       string
	JSON        []byte
	PDU         gomatrixserverlib.PDU
}

// Record layout: flags, stateBefore, redactedBy, roomNID, replaces,
// version, eventID, txnDevice, txnID, then the event JSON to the end.
func (e *Event) encode() []byte {
	w := recordWriter{b: make([]byte, 0, 48+len(e.Version)+len(e.ID)+len(e.TxnDevice)+len(e.TxnID)+len(e.JSON))}
	w.byte(e.Flags)
	w.u64(e.StateBefore)
	w.u64(e.RedactedBy)
	w.u64(e.RoomNID)
	w.u64(e.Replaces)
	w.str(string(e.Version))
	w.str(e.ID)
	w.str(e.TxnDevice)
	w.str(e.TxnID)
	return append(w.b, e.JSON...)
}

func decodeEvent(nid uint64, b []byte) (*Event, error) {
	r := recordReader{b: b}
	e := &Event{NID: nid, Flags: r.byte(), StateBefore: r.u64(), RedactedBy: r.u64(), RoomNID: r.u64(),
		Replaces: r.u64(), Version: gomatrixserverlib.RoomVersion(r.str()), ID: r.str(),
		TxnDevice: r.str(), TxnID: r.str()}
	e.JSON = r.rest()
	return e, r.err()
}

// loadEvent reads one stored event and parses it, or takes the parsed
// form from the cache when the record still holds the same event.
func (e *Engine) loadEvent(tx *store.Tx, nid uint64) (*Event, error) {
	b := tx.Get(store.Events, store.PutU64(nid))
	if b == nil {
		return nil, fmt.Errorf("room: event %d missing", nid)
	}
	ev, err := decodeEvent(nid, b)
	if err != nil {
		return nil, err
	}
	redacted := ev.Flags&flagRedacted != 0
	if ev.PDU = e.pdus.get(nid, ev.ID, redacted); ev.PDU != nil {
		return ev, nil
	}
	ver, err := gomatrixserverlib.GetRoomVersion(ev.Version)
	if err != nil {
		return nil, err
	}
	ev.PDU, err = ver.NewEventFromTrustedJSONWithEventID(ev.ID, ev.JSON, redacted)
	if err != nil {
		return nil, fmt.Errorf("room: parse stored event %d: %w", nid, err)
	}
	e.pdus.put(nid, ev.ID, redacted, ev.PDU)
	return ev, nil
}

// ClientEvent is the client-facing event format (Client-Server API
// §"Room Event Format" / ClientEvent).
type ClientEvent struct {
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id"`
	OriginServerTS int64           `json:"origin_server_ts"`
	RoomID         string          `json:"room_id,omitempty"`
	Sender         string          `json:"sender"`
	StateKey       *string         `json:"state_key,omitempty"`
	Type           string          `json:"type"`
	Redacts        string          `json:"redacts,omitempty"`
	Unsigned       map[string]any  `json:"unsigned,omitempty"`
}

// ClientView says how an event is shown to one viewer.
type ClientView struct {
	// Viewer is the user ID and client session the event is served to;
	// the sending session alone sees unsigned.transaction_id.
	Viewer, ViewerDevice string
	// OmitRoomID drops room_id, as /sync does inside a room's section.
	OmitRoomID bool
	// Now is for unsigned.age.
	NowMs int64
	// depth counts how deep inside another event's bundled aggregations
	// this event is served; bundling stops at maxBundleDepth.
	depth int
}

// clientEvent converts a stored event for a client.
func (e *Engine) clientEvent(tx *store.Tx, ev *Event, v ClientView) ClientEvent {
	p := ev.PDU
	ce := ClientEvent{
		Content:        json.RawMessage(p.Content()),
		EventID:        p.EventID(),
		OriginServerTS: int64(p.OriginServerTS()),
		Sender:         string(p.SenderID()),
		StateKey:       p.StateKey(),
		Type:           p.Type(),
		Unsigned:       map[string]any{},
	}
	if len(ce.Content) == 0 {
		ce.Content = json.RawMessage("{}")
	}
	if !v.OmitRoomID {
		ce.RoomID = p.RoomID().String()
	}
	if r := p.Redacts(); r != "" {
		ce.Redacts = r
		// Room v11 moved redacts into content; clients read either.
	}
	if v.NowMs > 0 {
		ce.Unsigned["age"] = v.NowMs - ce.OriginServerTS
	}
	if ev.TxnID != "" && v.ViewerDevice == ev.TxnDevice && v.Viewer == ce.Sender {
		ce.Unsigned["transaction_id"] = ev.TxnID
	}
	if ev.TxnDevice == DelayedSession && v.Viewer == ce.Sender {
		// MSC4140 "delay_id in unsigned event data", for the sender only.
		ce.Unsigned["org.matrix.msc4140.delay_id"] = strings.TrimPrefix(ev.TxnID, "msc4140 ")
	}
	if ev.Replaces != 0 && tx != nil {
		// unsigned.prev_content lets clients show "changed their name from…".
		if pe, err := e.loadEvent(tx, ev.Replaces); err == nil {
			ce.Unsigned["prev_content"] = json.RawMessage(pe.PDU.Content())
			ce.Unsigned["replaces_state"] = pe.PDU.EventID()
			ce.Unsigned["prev_sender"] = string(pe.PDU.SenderID())
		}
	}
	if ev.RedactedBy != 0 && tx != nil {
		if re, err := e.loadEvent(tx, ev.RedactedBy); err == nil {
			because := e.clientEvent(nil, re, ClientView{OmitRoomID: v.OmitRoomID})
			// Served without bundling (no tx), but its reason is erased
			// for the viewer like any event of an erased sender.
			e.eraseFor(tx, re, v, &because)
			ce.Unsigned["redacted_because"] = because
		}
	}
	e.eraseFor(tx, ev, v, &ce)
	if tx != nil && v.Viewer != "" && v.depth < maxBundleDepth {
		e.bundle(tx, ev, v, &ce) // unsigned["m.relations"], see read_aggregations.go
	}
	if len(ce.Unsigned) == 0 {
		ce.Unsigned = nil
	}
	return ce
}

func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// eachEventIn calls fn with each stored event record whose NID is in
// (after, upTo], in stream order: the walk every follower of the stream
// makes over what was committed since it last looked.
func eachEventIn(tx *store.Tx, after, upTo uint64, fn func(nid uint64, record []byte) error) error {
	c := tx.Cursor(store.Events)
	for k, v := c.Seek(store.PutU64(after + 1)); k != nil; k, v = c.Next() {
		nid := store.U64(k)
		if nid > upTo {
			break
		}
		if err := fn(nid, v); err != nil {
			return err
		}
	}
	return nil
}
