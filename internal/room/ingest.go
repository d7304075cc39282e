package room

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/store"
)

// Ingest stores an event another server sent, after the checks of
// Server-Server API §"Checks performed on receipt of a PDU" that need the
// room: auth against the event's auth_events, auth against the state
// before it, and soft-fail against the current state. The caller (the
// federation package) has done the first three checks: format,
// signatures, and hashes (an event failing its hash arrives redacted).
//
// It returns nil for an event already known, *MissingError when prev or
// auth events are unknown (fetch them and try again), and *RejectedError
// when the event fails auth: it is then stored as rejected, so it is never
// served and never asked for again, and nothing else changes.
func (e *Engine) Ingest(ctx context.Context, pdu gomatrixserverlib.PDU, opts IngestOptions) error {
	pdu.EventID()
	var rejected *RejectedError
	err := e.db.Update(ctx, func(tx *store.Tx) error {
		rejected = nil
		info, err := roomInfo(tx, pdu.RoomID().String())
		if err != nil {
			return err
		}
		if eventNID(tx, pdu.EventID()) != 0 {
			return nil
		}
		if rejected, err = e.ingest(tx, info, pdu, opts); err != nil {
			return err
		}
		return putRoomInfo(tx, info)
	})
	if err != nil {
		return err
	}
	if rejected != nil {
		return rejected
	}
	return nil
}

// IngestBatch is Ingest for the events of one inbound transaction, in
// order, in one store transaction (one commit instead of one per event):
// a result per event, as Ingest would return it. If then is not nil it
// runs in that store transaction after the events, with their results,
// so that what the caller records about them (the federation
// transaction's answer) shares their commit; committed reports that it
// ran and was committed. If storing fails for any of them, each is
// ingested on its own instead, and then does not run. pre, if not nil,
// holds the events' check 4 run ahead (PrecheckAuth; nil entries for
// none), used where it still applies.
func (e *Engine) IngestBatch(ctx context.Context, pdus []gomatrixserverlib.PDU, pre []*AuthPrecheck,
	then func(tx *store.Tx, results []error) error) (results []error, committed bool) {
	results, _, committed = e.IngestStream(ctx, len(pdus), func(i int) (gomatrixserverlib.PDU, *AuthPrecheck, bool) {
		if i < len(pre) {
			return pdus[i], pre[i], true
		}
		return pdus[i], nil, true
	}, then)
	return results, committed
}

// IngestStream is IngestBatch for n events that may still be being
// checked when it is called: the store's writer takes event i from
// next(i), which waits until the event is ready and returns it with its
// check 4 run ahead (nil: none), or a nil event for one not to store (it
// failed the caller's checks; its result stays nil). The writer stores
// event i while later ones are still checked on the other cores, so that
// a transaction's auth and state work is off its path instead of after
// every check (Server-Server API §"Transactions": the sender waits for
// the answer before its next transaction). next may be called more than
// once for an event, and from another goroutine than the caller's.
//
// The writer, which every local send shares, must never wait on another
// server: next returns ok false instead of waiting for an event whose
// check may (a signature that needs a key fetched). The events before it
// are then stored and committed without it, then does not run, and done
// (otherwise n) says where to go on once it is checked.
func (e *Engine) IngestStream(ctx context.Context, n int, next func(i int) (pdu gomatrixserverlib.PDU, pre *AuthPrecheck, ok bool),
	then func(tx *store.Tx, results []error) error) (results []error, done int, committed bool) {
	results = make([]error, n)
	err := e.db.Update(ctx, func(tx *store.Tx) error {
		// The store may run this again after another write of the same
		// commit failed: start from nothing each time.
		clear(results)
		committed, done = false, n
		infos := map[string]*Info{}
		for i := range n {
			pdu, pre, ok := next(i)
			if !ok {
				done = i
				break
			}
			if pdu == nil {
				continue
			}
			pdu.EventID()
			roomID := pdu.RoomID().String()
			info := infos[roomID]
			if info == nil {
				var err error
				if info, err = roomInfo(tx, roomID); err != nil {
					results[i] = err
					continue
				}
				infos[roomID] = info
			}
			if eventNID(tx, pdu.EventID()) != 0 {
				continue
			}
			rejected, err := e.ingest(tx, info, pdu, IngestOptions{auth: pre})
			var missing *MissingError
			switch {
			case errors.As(err, &missing):
				results[i] = err
			case err != nil:
				return err
			case rejected != nil:
				results[i] = rejected
			}
		}
		for _, info := range infos {
			if err := putRoomInfo(tx, info); err != nil {
				return err
			}
		}
		if then != nil && done == n {
			if err := then(tx, results); err != nil {
				return err
			}
			committed = true
		}
		return nil
	})
	if err != nil {
		committed, done = false, n
		for i := range n {
			pdu, _, ok := next(i)
			if !ok {
				done = i
				break
			}
			results[i] = nil
			if pdu != nil {
				results[i] = e.Ingest(ctx, pdu, IngestOptions{})
			}
		}
	}
	return results[:done], done, committed
}

// IngestOptions says how an inbound event reached this server.
type IngestOptions struct {
	// Relay marks an event accepted through send_join, send_leave or
	// send_knock: this server sends it on to the rest of the room.
	Relay bool

	auth *AuthPrecheck // check 4 run ahead (IngestBatch, ingest_precheck.go)
}

// MissingError lists events an inbound event refers to that this server
// does not have (or has without the state at them).
type MissingError struct {
	Prev []string // prev_events unknown, or known only as outliers
	Auth []string // auth_events unknown
}

func (m *MissingError) Error() string {
	return fmt.Sprintf("room: missing prev events %v, auth events %v", m.Prev, m.Auth)
}

// RejectedError is an event that failed the auth rules.
type RejectedError struct{ Reason string }

func (r *RejectedError) Error() string { return "event rejected: " + r.Reason }

// ingest runs the checks and appends; a rejection is returned as the
// first result, with the event stored as rejected.
func (e *Engine) ingest(tx *store.Tx, info *Info, pdu gomatrixserverlib.PDU, opts IngestOptions) (*RejectedError, error) {
	if pdu.Version() != info.Version {
		return &RejectedError{"room version does not match the room"}, nil
	}
	missing := &MissingError{}
	authPDUs, reason, err := e.authEventsOf(tx, info.NID, pdu, missing)
	if err != nil {
		return nil, err
	}
	foreign := "" // set when a prev or auth event belongs to another room
	for _, a := range authPDUs {
		if a.RoomID().String() != info.ID {
			foreign = "an auth event is in another room: " + a.EventID()
		}
	}
	var prevs []*Event
	for _, id := range pdu.PrevEventIDs() {
		nid := eventNID(tx, id)
		if nid == 0 {
			missing.Prev = append(missing.Prev, id)
			continue
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return nil, err
		}
		if ev.RoomNID != info.NID {
			// An event of another room as a prev event would carry that
			// room's state into this one.
			foreign = "a prev event is in another room: " + id
			continue
		}
		if ev.Flags&flagStateless != 0 {
			missing.Prev = append(missing.Prev, id)
			continue
		}
		prevs = append(prevs, ev)
	}
	ev := &Event{RoomNID: info.NID, Version: info.Version, ID: pdu.EventID(), JSON: pdu.JSON(), PDU: pdu}
	if foreign != "" {
		// Refused before any state is worked out from those events.
		ev.Flags |= flagRejected | flagOutlier | flagStateless
		return &RejectedError{foreign}, e.storeEvent(tx, ev)
	}
	if len(missing.Prev)+len(missing.Auth) > 0 {
		return nil, missing
	}
	if opts.Relay {
		ev.Flags |= flagRelay
	}
	if pdu.Redacted() {
		ev.Flags |= flagRedacted
	}
	if reason == "" {
		// Check 4: the event is allowed by its own auth events.
		if err := e.allowedByOwn(pdu, authPDUs, opts.auth); err != nil {
			reason = err.Error()
		}
	}
	current := &roomState{snapshot: info.Snapshot, roomNID: info.NID, current: true}
	before := current
	if len(prevs) != 1 || len(info.Extremities) != 1 || prevs[0].ID != info.Extremities[0] || prevs[0].NID != info.LastPos {
		// Not the common case of an event on the room's only head, whose
		// state before is the current state: compute it.
		if before, err = e.stateBeforePrevs(tx, info, pdu, prevs); err != nil {
			return nil, err
		}
	}
	if reason == "" {
		// Check 5: the event is allowed by the state before it. When that
		// state holds exactly the event's own auth events (the usual case
		// of an event on the room's head), the auth rules would see what
		// check 4 saw and give its answer: they are not run twice.
		auth, err := e.stateForAuth(tx, pdu, before)
		if err != nil {
			reason = err.Error()
		} else if !sameEvents(auth, authPDUs) {
			if err := e.allowedBy(pdu, auth); err != nil {
				reason = err.Error()
			}
		}
	}
	if ev.StateBefore, err = e.snapshotOf(tx, info, before); err != nil {
		return nil, err
	}
	if reason != "" {
		ev.Flags |= flagRejected | flagOutlier
		return &RejectedError{reason}, e.storeEvent(tx, ev)
	}
	if sk := pdu.StateKey(); sk != nil {
		if ev.Replaces, err = before.lookup(tx, stateKey(pdu.Type(), *sk)); err != nil {
			return nil, err
		}
	}
	// Check 6: soft-fail. An event the current state would not allow is
	// kept (later events may build on it) but not shown to clients or made
	// a forward extremity (§"Soft failure").
	if before != current {
		if err := e.allowedAt(tx, pdu, current); err != nil {
			ev.Flags |= flagOutlier
			return nil, e.storeEvent(tx, ev)
		}
	}
	return nil, e.appendRemote(tx, info, ev, before == current)
}

// authEventsOf loads the event's auth events; unknown ones are added to
// missing, and a reason is returned if the list itself breaks the rules.
func (e *Engine) authEventsOf(tx *store.Tx, roomNID uint64, pdu gomatrixserverlib.PDU, missing *MissingError) ([]gomatrixserverlib.PDU, string, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(pdu.Version())
	if err != nil {
		return nil, "", err
	}
	if ver.DomainlessRoomIDs() {
		// Room v12: the create event is implied and must not be listed
		// (gomatrixserverlib does not enforce this).
		create := "$" + strings.TrimPrefix(pdu.RoomID().String(), "!")
		for _, id := range gjson.GetBytes(pdu.JSON(), "auth_events").Array() {
			if id.String() == create {
				return nil, "auth_events lists the create event", nil
			}
		}
	}
	var out []gomatrixserverlib.PDU
	seen := map[string]bool{}
	reason := ""
	for _, id := range pdu.AuthEventIDs() {
		nid := eventNID(tx, id)
		if nid == 0 {
			missing.Auth = append(missing.Auth, id)
			continue
		}
		ev, err := e.loadEvent(tx, nid)
		if err != nil {
			return nil, "", err
		}
		if ev.Flags&flagRejected != 0 {
			reason = "an auth event was rejected: " + id
		}
		if ev.RoomNID != roomNID {
			reason = "an auth event is in another room: " + id
		}
		k := stateKeyOf(ev.PDU)
		if seen[k] {
			reason = "auth_events lists two events for " + k
		}
		seen[k] = true
		out = append(out, ev.PDU)
	}
	return out, reason, nil
}

func stateKeyOf(pdu gomatrixserverlib.PDU) string {
	if sk := pdu.StateKey(); sk != nil {
		return stateKey(pdu.Type(), *sk)
	}
	return pdu.Type()
}

func (e *Engine) allowedBy(pdu gomatrixserverlib.PDU, auth []gomatrixserverlib.PDU) error {
	provider, err := gomatrixserverlib.NewAuthEvents(auth)
	if err != nil {
		return err
	}
	return allowed(pdu, provider)
}

// allowed is gomatrixserverlib.Allowed that survives its panics on
// malformed events (a room ID that does not parse, for one): an event
// that crashes the auth rules is not allowed.
func allowed(pdu gomatrixserverlib.PDU, provider gomatrixserverlib.AuthEventProvider) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("auth rules failed: %v", r)
		}
	}()
	return gomatrixserverlib.Allowed(pdu, provider, userIDForSender)
}

// allowedAt checks pdu against the state s, loading only the entries the
// auth rules look at.
func (e *Engine) allowedAt(tx *store.Tx, pdu gomatrixserverlib.PDU, s *roomState) error {
	auth, err := e.stateForAuth(tx, pdu, s)
	if err != nil {
		return err
	}
	return e.allowedBy(pdu, auth)
}

// stateForAuth loads the entries of the state s that the auth rules look
// at for pdu.
func (e *Engine) stateForAuth(tx *store.Tx, pdu gomatrixserverlib.PDU, s *roomState) ([]gomatrixserverlib.PDU, error) {
	needed := gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{pdu})
	var auth []gomatrixserverlib.PDU
	for _, t := range needed.Tuples() {
		nid, err := s.lookup(tx, stateKey(t.EventType, t.StateKey))
		if err != nil {
			return nil, err
		}
		if nid != 0 {
			ev, err := e.loadEvent(tx, nid)
			if err != nil {
				return nil, err
			}
			auth = append(auth, ev.PDU)
		}
	}
	return auth, nil
}

// sameEvents reports whether a and b hold the same events (by event ID),
// in any order; neither lists an event twice.
func sameEvents(a, b []gomatrixserverlib.PDU) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.ContainsFunc(b, func(y gomatrixserverlib.PDU) bool { return y.EventID() == x.EventID() }) {
			return false
		}
	}
	return true
}

// storeEvent writes the event record and indexes its ID, nothing else.
func (e *Engine) storeEvent(tx *store.Tx, ev *Event) error {
	nid, err := tx.NextPos()
	if err != nil {
		return err
	}
	ev.NID = nid
	if err := tx.Put(store.Events, store.PutU64(nid), ev.encode()); err != nil {
		return err
	}
	if err := eventIndexOf(tx).add(tx, ev.ID, nid); err != nil { // store_eventids.go
		return err
	}
	// The next event of a chain names this one as its prev event, often
	// in the same transaction: keep the parsed event rather than parse
	// its JSON again. The cache checks the event ID, so an entry left by
	// a rolled-back commit is never served for another event.
	if ev.PDU != nil && ev.PDU.Redacted() == (ev.Flags&flagRedacted != 0) {
		e.pdus.put(nid, ev.ID, ev.Flags&flagRedacted != 0, ev.PDU)
	}
	return nil
}

// appendRemote adds an accepted event to the timeline and moves the
// room's forward extremities and current state. An event on the room's
// only head changes the current state as a local event does; one that
// builds on every extremity makes its state after the current state;
// otherwise the current state and the state after it are resolved.
func (e *Engine) appendRemote(tx *store.Tx, info *Info, ev *Event, onHead bool) error {
	if err := e.storeEvent(tx, ev); err != nil {
		return err
	}
	if err := tx.Put(store.Timeline, store.NIDKey(info.NID, store.PutU64(ev.NID)), nil); err != nil {
		return err
	}
	if err := indexRelation(tx, info.NID, ev.NID, ev.PDU.Content()); err != nil {
		return err
	}
	prevs := ev.PDU.PrevEventIDs()
	coversAll := true
	var extremities []string
	for _, x := range info.Extremities {
		if slices.Contains(prevs, x) {
			continue
		}
		coversAll = false
		extremities = append(extremities, x)
	}
	info.Extremities = append(extremities, ev.ID)
	info.Depth = max(info.Depth, ev.PDU.Depth())
	info.LastPos = ev.NID
	if err := e.moveState(tx, info, ev, onHead, coversAll); err != nil {
		return err
	}
	if ev.PDU.Type() == "m.room.redaction" && ev.Flags&flagRedacted == 0 {
		return e.applyRemoteRedaction(tx, info, ev)
	}
	return nil
}

func (e *Engine) moveState(tx *store.Tx, info *Info, ev *Event, onHead, coversAll bool) error {
	sk := ev.PDU.StateKey()
	if onHead {
		if sk == nil {
			return nil
		}
		if err := setCurrent(tx, info, ev.PDU, ev.NID); err != nil {
			return err
		}
		var err error
		info.Snapshot, err = addSnapshot(tx, info.Snapshot, stateKey(ev.PDU.Type(), *sk), ev.NID)
		return err
	}
	current := &roomState{snapshot: info.Snapshot}
	next, err := e.stateAfter(tx, ev)
	if err != nil {
		return err
	}
	if !coversAll {
		if next, err = e.resolve(tx, info, []*roomState{current, next}); err != nil {
			return err
		}
	}
	if err := e.setCurrentState(tx, info, current, next); err != nil {
		return err
	}
	return noteStateMoved(tx, info, current, next, ev.NID)
}

// applyRemoteRedaction applies a redaction the auth rules let through if
// the spec's further check passes: the redacter's server sent the target,
// or the redacter has the redact power level (§"Redactions", v3+).
func (e *Engine) applyRemoteRedaction(tx *store.Tx, info *Info, ev *Event) error {
	nid := eventNID(tx, redactsTarget(ev.PDU))
	if nid == 0 {
		return nil
	}
	target, err := e.loadEvent(tx, nid)
	if err != nil || target.RoomNID != info.NID {
		return err
	}
	sender := string(ev.PDU.SenderID())
	if serverOf(sender) != serverOf(string(target.PDU.SenderID())) {
		pl, err := e.powerLevels(tx, info)
		if err != nil {
			return err
		}
		if pl.level(sender) < pl.Redact {
			return nil
		}
	}
	return e.applyRedaction(tx, ev.PDU, ev.NID)
}

// IsMissing reports whether err asks the caller to fetch events first.
func IsMissing(err error) (*MissingError, bool) {
	var m *MissingError
	ok := errors.As(err, &m)
	return m, ok
}
