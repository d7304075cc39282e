package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// SendRequest is one event a local user asks to send (Client-Server API
// §"Sending events to a room": PUT /send and PUT /state).
type SendRequest struct {
	Sender   string // full user ID
	Device   string // the sending client session (see TxnKey), for transaction-ID idempotency
	RoomID   string
	Type     string
	StateKey *string // nil for message events
	Content  json.RawMessage
	TxnID    string // empty for state events, which have no txn
	Redacts  string // for m.room.redaction
	// TS overrides origin_server_ts when not zero: an application
	// service's `ts` query parameter (Application Service API
	// §"Timestamp massaging"), which the client API allows only for
	// appservice callers.
	TS time.Time
}

// Send builds, authorises, signs and appends an event, returning its ID once
// it is durable. A repeated transaction (same sender, client session,
// room, request path and txn ID) returns the first event's ID without
// sending again; so does a state event identical to the current one.
//
// The request waits in its room's queue; the room's builder builds it on
// top of the events queued before it and appends them together (see
// perform_sequencer.go): local events of a room always form one chain. A request
// whose context ends before its turn is not sent; once its turn has come
// it waits for the commit.
func (e *Engine) Send(ctx context.Context, req SendRequest) (string, error) {
	if len(req.Content) > maxEventBytes {
		// Refused before building: content this size can never make an
		// event within the limit, and canonicalising it costs the builder.
		return "", matrixerr.TooLarge("event content is larger than an event may be")
	}
	p := &pendingSend{ctx: ctx, req: req, done: make(chan struct{})}
	if q := e.enqueue(p); q != nil {
		e.buildFirst(req.RoomID, q) // perform_sequencer.go
	}
	<-p.done
	return p.id, p.err
}

// sentBefore returns the event a repeated transaction ID already sent.
func (e *Engine) sentBefore(tx *store.Tx, req SendRequest) (string, error) {
	if req.TxnID == "" {
		return "", nil
	}
	nid, err := txnIndexOf(e.db).lookup(tx, txnKey(req)) // store_txns.go
	if err != nil || nid == 0 {
		return "", err
	}
	ev, err := e.loadEvent(tx, nid)
	if err != nil {
		return "", err
	}
	return ev.ID, nil
}

// maxEventBytes is the spec's limit on a whole event's canonical JSON
// (Client-Server API §"Size limits").
const maxEventBytes = 65536

// txnKey scopes a transaction ID to the sender's client session and the
// request path — the room, and the event type or the redacted event
// (Client-Server API §"Transaction identifiers"): the same ID in another
// room, or from another login, is another event.
func txnKey(req SendRequest) []byte {
	path := req.Type
	if req.Redacts != "" {
		path = "redact " + req.Redacts
	}
	return store.Key(req.Sender, req.Device, req.TxnID, req.RoomID, path)
}

// unchangedState returns the current state event that req would only
// repeat — same type, state key, sender and content — so that setting the
// same state twice makes no second event (as Synapse does; Complement
// "Setting state twice is idempotent"). A sender no longer joined gets no
// such answer: their request goes through the auth rules.
func (e *Engine) unchangedState(tx *store.Tx, info *Info, req SendRequest) (string, error) {
	if req.StateKey == nil || req.Type == "m.room.redaction" {
		return "", nil
	}
	nid := currentStateNID(tx, info.NID, req.Type, *req.StateKey)
	if nid == 0 || membershipIn(tx, req.Sender, info.NID).Membership != "join" {
		return "", nil
	}
	ev, err := e.loadEvent(tx, nid)
	if err != nil {
		return "", err
	}
	content := req.Content
	if len(content) == 0 {
		content = json.RawMessage("{}")
	}
	if string(ev.PDU.SenderID()) != req.Sender || ev.Flags&flagRedacted != 0 || !jsonEqual(ev.PDU.Content(), content) {
		return "", nil
	}
	return ev.ID, nil
}

// buildAndAppend builds and appends in one write transaction, so the
// prev_events, depth and auth state it reads cannot change under it.
func (e *Engine) buildAndAppend(tx *store.Tx, info *Info, req SendRequest) (*Event, error) {
	pdu, err := e.build(tx, info, req)
	if err != nil {
		return nil, err
	}
	return e.append(tx, info, pdu, &req)
}

// build makes the signed event for req on the room head in info and checks
// it against the room's current state.
func (e *Engine) build(tx *store.Tx, info *Info, req SendRequest) (gomatrixserverlib.PDU, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(info.Version)
	if err != nil {
		return nil, err
	}
	if req.Type == "m.room.create" {
		// A room has one create event, made with the room (and in v12 its
		// ID is that event's hash, MSC4291): a second is a bad request.
		return nil, matrixerr.BadJSON("a room's m.room.create event cannot be sent again")
	}
	content := req.Content
	if len(content) == 0 {
		content = json.RawMessage("{}")
	}
	if req.Type == "m.room.power_levels" && req.StateKey != nil && *req.StateKey == "" {
		// Levels the room version cannot parse are a bad request, not a
		// forbidden one (creators named in v12 are caught by the auth
		// rules below).
		if err := checkPowerLevels(ver, content, nil); err != nil {
			return nil, err
		}
	}
	proto := gomatrixserverlib.ProtoEvent{
		SenderID:   req.Sender,
		RoomID:     info.ID,
		Type:       req.Type,
		StateKey:   req.StateKey,
		PrevEvents: info.Extremities,
		Depth:      info.Depth + 1,
		Content:    spec.RawJSON(content),
	}
	if req.Type == "m.room.redaction" {
		if err := e.checkRedaction(tx, info, ver, req); err != nil {
			return nil, err
		}
		proto.Redacts = req.Redacts
		if ver.Version() == gomatrixserverlib.RoomVersionV11 || ver.DomainlessRoomIDs() {
			// Room v11 moved redacts into content (MSC2174); keep both so
			// older clients that read the top level still see it.
			c, err := setJSONField(content, "redacts", req.Redacts)
			if err != nil {
				return nil, err
			}
			proto.Content = spec.RawJSON(c)
		}
	}
	provider, err := e.sendAuthProvider(tx, info, &proto) // perform_send_authcache.go
	if err != nil {
		return nil, err
	}
	eb := ver.NewEventBuilderFromProtoEvent(&proto)
	if err := eb.AddAuthEvents(provider); err != nil {
		return nil, badEvent(err)
	}
	now := e.now()
	if !req.TS.IsZero() {
		now = req.TS
	}
	pdu, err := e.signEvent(ver, eb, now)
	if err != nil {
		return nil, badEvent(err)
	}
	if err := e.authorise(pdu, provider); err != nil { // perform_send_allowed.go
		var invalid *gomatrixserverlib.EventValidationError
		if errors.As(err, &invalid) {
			// Content the room version forbids whoever sends it, such as
			// v12 power levels that name a creator: a bad request.
			return nil, matrixerr.BadJSON(invalid.Error())
		}
		return nil, forbidden(err)
	}
	pdu.EventID() // computed lazily and cached in the PDU: do it before sharing
	return pdu, nil
}

// append stores an authorised event and every index that depends on it.
// sent is the client request that made it, whose transaction ID (if any)
// is recorded under the same key sentBefore looks up; nil for events the
// server makes itself.
func (e *Engine) append(tx *store.Tx, info *Info, pdu gomatrixserverlib.PDU, sent *SendRequest) (*Event, error) {
	nid, err := tx.NextPos()
	if err != nil {
		return nil, err
	}
	ev := &Event{NID: nid, RoomNID: info.NID, Version: info.Version, ID: pdu.EventID(), StateBefore: info.Snapshot, JSON: pdu.JSON(), PDU: pdu}
	if sent != nil && sent.TxnID != "" {
		ev.TxnDevice, ev.TxnID = sent.Device, sent.TxnID
		txnIndexOf(e.db).record(tx, txnKey(*sent), nid)
	}
	if sk := pdu.StateKey(); sk != nil {
		key := stateKey(pdu.Type(), *sk)
		ev.Replaces = currentStateNID(tx, info.NID, pdu.Type(), *sk)
		if err := setCurrent(tx, info, pdu, nid); err != nil {
			return nil, err
		}
		if info.Snapshot, err = addSnapshot(tx, info.Snapshot, key, nid); err != nil {
			return nil, err
		}
	}
	if err := tx.Put(store.Events, store.PutU64(nid), ev.encode()); err != nil {
		return nil, err
	}
	if err := eventIndexOf(tx).add(tx, pdu.EventID(), nid); err != nil { // store_eventids.go
		return nil, err
	}
	if err := tx.Put(store.Timeline, store.NIDKey(info.NID, store.PutU64(nid)), nil); err != nil {
		return nil, err
	}
	if err := indexRelation(tx, info.NID, nid, pdu.Content()); err != nil {
		return nil, err
	}
	info.Extremities = []string{pdu.EventID()}
	info.Depth = pdu.Depth()
	info.LastPos = nid
	if pdu.Type() == "m.room.redaction" {
		if err := e.applyRedaction(tx, pdu, nid); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// setCurrent makes the state event pdu (stored at nid) the room's current
// state for its (type, state_key), with the member counts, membership
// index and visibility logs that follow from it.
func setCurrent(tx *store.Tx, info *Info, pdu gomatrixserverlib.PDU, nid uint64) error {
	sk := *pdu.StateKey()
	if err := tx.Put(store.State, store.NIDKey(info.NID, []byte(stateKey(pdu.Type(), sk))), store.PutU64(nid)); err != nil {
		return err
	}
	switch pdu.Type() {
	case "m.room.member":
		m, _ := pdu.Membership()
		info.count(membershipIn(tx, sk, info.NID).Membership, -1)
		info.count(m, +1)
		if err := setMembership(tx, sk, info.NID, m, nid); err != nil {
			return err
		}
		return logVisibility(tx, info.NID, pdu.Type(), sk, m, nid)
	case "m.room.history_visibility":
		hv, err := pdu.HistoryVisibility()
		if err != nil {
			hv = "shared" // unparseable content leaves the default in force
		}
		return logVisibility(tx, info.NID, pdu.Type(), sk, string(hv), nid)
	}
	return nil
}

// indexRelation records m.relates_to so /relations is a range scan.
func indexRelation(tx *store.Tx, roomNID, nid uint64, content []byte) error {
	rel := gjson.GetBytes(content, "m\\.relates_to")
	parent := rel.Get("event_id").String()
	relType := rel.Get("rel_type").String()
	if parent == "" || relType == "" {
		return nil
	}
	pnid := eventNID(tx, parent)
	if pnid == 0 {
		return nil
	}
	key := store.NIDKey(roomNID, store.NIDKey(pnid, store.PutU64(nid)))
	return tx.Put(store.Relations, key, []byte(relType))
}

func setJSONField(obj json.RawMessage, key string, value any) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil || m == nil {
		m = map[string]json.RawMessage{}
	}
	v, err := json.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("room: encode %s: %w", key, err)
	}
	m[key] = v
	return json.Marshal(m)
}

// serverOf returns the server name of a user ID.
func serverOf(userID string) string {
	_, s, _ := strings.Cut(userID, ":")
	return s
}

// DelayedSession is the client session internal/delayed sends delayed
// events under (MSC4140), with the txn ID "msc4140 " + the delay ID: a
// resend after a crash is then the same transaction, and the sender sees
// the delay ID in unsigned. No client session holds a NUL, so no device
// takes these transactions for its own.
const DelayedSession = "\x00msc4140"
