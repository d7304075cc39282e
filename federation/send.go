package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// The spec's limits on one transaction (Server-Server API §"Transactions").
const (
	maxPDUs = 50
	maxEDUs = 100
)

type transaction struct {
	Origin string                  `json:"origin"`
	PDUs   []json.RawMessage       `json:"pdus"`
	EDUs   []gomatrixserverlib.EDU `json:"edus"`
}

// send is PUT /_matrix/federation/v1/send/{txnId}. A transaction ID seen
// before from the same origin gets the first answer again and changes
// nothing; each PDU is checked and stored on its own, so one bad event
// does not cost the others.
//
// The request's X-Matrix signature is checked beside the events' checks
// (send_auth.go): every answer, and everything but reading and checking,
// waits for it.
func (s *Service) send(w http.ResponseWriter, r *request) error {
	// refuse answers with err once the request is known to be signed
	// (otherwise with the signature's error, as before the body was read).
	refuse := func(err error) error {
		if aerr := r.authenticated(); aerr != nil {
			return aerr
		}
		return err
	}
	key := store.Key(string(r.origin), r.PathValue("txnID"))
	var prior []byte
	s.cfg.DB.View(func(tx *store.Tx) error {
		prior = append(prior, tx.Get(store.FedTxns, key)...)
		return nil
	})
	if prior != nil {
		if err := r.authenticated(); err != nil {
			return err
		}
		// The recorded answer, byte for byte (it is JSON already).
		w.Header().Set("Content-Type", "application/json")
		w.Write(prior)
		return nil
	}
	var txn transaction
	if err := json.Unmarshal(r.body, &txn); err != nil {
		return refuse(matrixerr.NotJSON("transaction is not valid JSON"))
	}
	if len(txn.PDUs) > maxPDUs || len(txn.EDUs) > maxEDUs {
		return refuse(matrixerr.BadJSON(fmt.Sprintf("a transaction holds at most %d PDUs and %d EDUs", maxPDUs, maxEDUs)))
	}
	if txn.Origin != "" && txn.Origin != string(r.origin) {
		return refuse(matrixerr.Forbidden("transaction origin does not match the request's signer"))
	}
	// The answer is recorded in the commit that stores the events when
	// nothing else is left to do: no EDUs (handled after the PDUs, so a
	// crash in between must not leave the retry answered) and no event
	// that needed a fetch. That saves a commit, and its fsync, per
	// transaction.
	var body []byte
	record := func(tx *store.Tx, results map[string]error) error {
		body = sendAnswer(results)
		return tx.Put(store.FedTxns, key, body)
	}
	if len(txn.EDUs) > 0 {
		record = nil
	}
	results, recorded := s.receivePDUs(r.Context(), r.origin, txn.PDUs, record, r.authenticated)
	if err := r.authenticated(); err != nil {
		return err // receivePDUs stopped before anything but checks
	}
	for id, err := range results {
		if err != nil {
			slog.Info("federation: PDU refused", "origin", r.origin, "event_id", id, "err", err)
		}
	}
	for _, edu := range txn.EDUs {
		s.receiveEDU(r.Context(), r.origin, edu)
	}
	if !recorded {
		body = sendAnswer(results)
		if err := s.cfg.DB.Update(r.Context(), func(tx *store.Tx) error {
			return tx.Put(store.FedTxns, key, body)
		}); err != nil {
			return err
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
	return nil
}

// receivePDUs runs the spec's checks on receipt of a PDU (§"Checks
// performed on receipt of a PDU") on a transaction's events and stores
// those that pass, returning a result per event ID. The checks that need
// no room state come first: an event of a room a local user is in, valid
// for the room's version, sent by its sender's server (or relayed by the
// resident server of a membership handshake), allowed by the room's
// server ACL, signed by the servers that must sign it; a hash mismatch
// leaves the event redacted. Those checks (parsing, hashing, ed25519)
// are most of a transaction's cost and need nothing but the event, so
// each core takes a share of the events (checkPDUs). The room engine
// then checks and stores them all in one store transaction; an event
// that refers to events this server lacks is retried on its own after
// fetching them.
//
// authed is the check of the request that brought the events, which may
// still be running (send_auth.go; nil: passed): until it has passed,
// receivePDUs only reads and checks; if it fails, nothing is held,
// fetched or stored, and the results are to be discarded.
func (s *Service) receivePDUs(ctx context.Context, origin spec.ServerName, raws []json.RawMessage,
	record func(*store.Tx, map[string]error) error, authed func() error) (results map[string]error, recorded bool) {
	if authed == nil {
		authed = func() error { return nil }
	}
	results = map[string]error{}
	inRoom := map[string]bool{}     // rooms a local user is joined to, asked once per transaction
	notJoining := map[string]bool{} // rooms not joined with no join in flight either
	versions := map[string]gomatrixserverlib.RoomVersion{}
	var cands []candidate
	for _, raw := range raws {
		roomID := gjson.GetBytes(raw, "room_id").String()
		joined, seen := inRoom[roomID]
		if !seen {
			joined = s.cfg.Rooms.HasLocalJoined(roomID)
			inRoom[roomID] = joined
		}
		if !joined && !notJoining[roomID] {
			if authed() != nil {
				return nil, false
			}
			// A room a local user's join to is in flight for: held until
			// the join is stored, and accepted (joining.go).
			if id, err, held := s.joining.hold(roomID, origin, raw); held {
				if id != "" {
					results[id] = err
				}
				continue
			}
			// The join may have been stored since the room was looked up.
			notJoining[roomID] = true
			joined = s.cfg.Rooms.HasLocalJoined(roomID)
			inRoom[roomID] = joined
		}
		if !joined {
			// Not a room this server is in (perhaps one a local user is
			// only invited to): nothing here may take its events.
			continue
		}
		version, ok := versions[roomID]
		if !ok {
			v, err := s.cfg.Rooms.RoomVersion(roomID)
			if err != nil {
				continue // not a room known here: no event ID to answer about
			}
			version, versions[roomID] = v, v
		}
		cands = append(cands, candidate{raw: raw, roomID: roomID, version: version})
	}
	if len(cands) == 0 {
		return results, false
	}
	ck := s.checkPDUs(ctx, origin, cands, authed)
	checked := ck.wait
	// The handler checks events too until half of them are taken; then
	// the store's writer starts on them (once the request's signature has
	// passed: nothing is stored before), storing each as soon as it is
	// checked (room.Engine.IngestStream) and, while the next one is not,
	// checking another itself. So the writer's work overlaps the checks
	// on both cores without a goroutine waiting for the scheduler to run
	// it (the checking goroutines never block), and holds the writer,
	// which every local send shares, for about the second half's checks.
	for ck.taken() < (len(cands)+1)/2 && ck.steal(true) {
	}
	if authed() != nil {
		checked()
		return nil, false
	}
	// next is event i for the writer once checked; ok is false instead
	// if its check has gone (or, checked in the writer, would go) to the
	// key ring, which may fetch keys from other servers: the writer must
	// not wait on that.
	next := func(i int) (pdu gomatrixserverlib.PDU, pre *room.AuthPrecheck, ok bool) {
		c := &cands[i]
	wait:
		for {
			select {
			case <-c.done:
				break wait
			case <-c.slow:
				select {
				case <-c.done:
					break wait
				default:
					return nil, nil, false
				}
			default:
			}
			if !ck.steal(false) {
				// Nothing left to take: the rest are being checked.
				select {
				case <-c.done:
				case <-c.slow:
					select {
					case <-c.done:
					default:
						return nil, nil, false
					}
				}
				break
			}
		}
		if c.pdu == nil || c.err != nil {
			return nil, nil, true
		}
		return c.pdu, c.pre, true
	}
	batch := make([]error, len(cands))
	// record runs in the events' commit if none of them needs a fetch:
	// then their results there are the final ones.
	wrote := false
	thenFrom := func(from int) func(*store.Tx, []error) error {
		if record == nil {
			return nil
		}
		return func(tx *store.Tx, rest []error) error {
			wrote = false
			all := maps.Clone(results)
			checkResults(cands, all)
			for i := range cands {
				err := batch[i]
				if i >= from {
					err = rest[i-from]
				}
				if isMissing(err) {
					return nil
				}
				if pdu, _, _ := next(i); pdu != nil {
					all[pdu.EventID()] = err
				}
			}
			wrote = true
			return record(tx, all)
		}
	}
	committed := false
	for from := 0; from < len(cands); {
		res, done, c := s.cfg.Rooms.IngestStream(ctx, len(cands)-from, func(i int) (gomatrixserverlib.PDU, *room.AuthPrecheck, bool) {
			return next(from + i)
		}, thenFrom(from))
		copy(batch[from:], res)
		from, committed = from+done, c
		if from < len(cands) {
			// Stopped before an event whose check may fetch: the rest
			// once every check has ended, outside the writer.
			checked()
		}
	}
	checked()
	checkResults(cands, results)
	// Events with gaps share one deadline for fetching what they miss, so
	// a peer that never answers cannot hold the transaction for long.
	fetchCtx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	for i, err := range batch {
		pdu, _, _ := next(i)
		if pdu == nil {
			continue
		}
		if isMissing(err) {
			err = s.ingest(fetchCtx, origin, pdu, 0)
		}
		results[pdu.EventID()] = err
	}
	return results, committed && wrote
}

// checkResults adds to results the answer for each candidate that failed
// checkPDUs' checks, in the order the checks run in one at a time: format
// and origin, then signatures (an event ID answered twice keeps the
// signature's); the room's checks come later.
func checkResults(cands []candidate, results map[string]error) {
	for _, c := range cands {
		if c.pdu != nil && c.err != nil && !c.badSig {
			results[c.pdu.EventID()] = c.err
		}
	}
	for _, c := range cands {
		if c.pdu != nil && c.badSig {
			results[c.pdu.EventID()] = c.err
		}
	}
}

// sendAnswer is the body of a /send answer: a result per PDU, with the
// reason of each refused one.
func sendAnswer(results map[string]error) []byte {
	resp := fclient.RespSend{PDUs: map[string]fclient.PDUResult{}}
	for id, err := range results {
		res := fclient.PDUResult{}
		if err != nil {
			res.Error = err.Error()
		}
		resp.PDUs[id] = res
	}
	body, _ := json.Marshal(resp)
	return body
}

// candidate is one PDU of a transaction for a room this server is in,
// and what checkPDUs found.
type candidate struct {
	raw     json.RawMessage
	roomID  string
	version gomatrixserverlib.RoomVersion

	pdu    gomatrixserverlib.PDU // nil if it did not even have an event ID
	err    error
	badSig bool               // err is from the signature check
	pre    *room.AuthPrecheck // check 4 run ahead, if its auth events are stored
	done   chan struct{}      // closed when the fields above are set
	slow   chan struct{}      // closed if the signature check went to the key ring
}

// checkPDUs parses each candidate for its room's version, checks that
// origin may send it, and verifies its signatures, a share of the
// candidates on each core: these checks need no room state, and ed25519
// verification and the canonical JSON and hashes of parsing are most of
// a transaction's cost. The bytes an event's signatures cover are made
// once and give its event ID too, and the senders' keys are read once
// per transaction (pdu_verify.go).
//
// The checks run in the background, about in the candidates' order;
// each candidate's done channel is closed when it is checked, and the
// function returned waits for all of them.
//
// authed is the request's check (receivePDUs): an event whose signature
// needs more than the cached keys waits for it before anything is
// fetched.
func (s *Service) checkPDUs(ctx context.Context, origin spec.ServerName, cands []candidate, authed func() error) *checking {
	keys := newSigKeys(s.cfg.KeyRing)
	keys.authed = authed
	prechecker := s.cfg.Rooms.NewAuthPrechecker()
	// Each room's server ACL is read once, before any of the
	// transaction's events is stored: all are judged by the ACL the
	// transaction arrived under.
	acl := map[string]error{}
	for i, c := range cands {
		if _, ok := acl[c.roomID]; !ok {
			acl[c.roomID] = s.checkACL(c.roomID, origin) // Server ACLs (acl.go)
		}
		cands[i].done, cands[i].slow = make(chan struct{}), make(chan struct{})
	}
	ck := &checking{cands: cands}
	// check checks c; with mayFetch false (in the store's writer) an
	// event whose signature needs the key ring is left for wait, with
	// only its slow channel closed.
	check := func(c *candidate, mayFetch bool) {
		pending := false
		defer func() {
			if !pending {
				close(c.done)
			}
		}()
		var signed []byte
		c.pdu, signed, c.err = parseSigned(c.version, c.roomID, c.raw)
		if c.pdu == nil || c.err != nil {
			return
		}
		if c.err = checkOrigin(c.pdu, origin, acl[c.roomID]); c.err != nil {
			return
		}
		if !verifiedBySender(ctx, gomatrixserverlib.MustGetRoomVersion(c.version), c.pdu, signed, keys) {
			// gomatrixserverlib's check, which may fetch keys: the
			// store's writer does not wait for it (receivePDUs), nor
			// run it.
			close(c.slow)
			if !mayFetch {
				pending = true
				ck.pend(c)
				return
			}
			if err := s.verifyByKeyRing(ctx, c.pdu, keys); err != nil {
				c.err, c.badSig = fmt.Errorf("bad signature: %w", err), true
				return
			}
		}
		// Check 4 (auth by the event's own auth events) here, on every
		// core, rather than in the store's writer (ingest_precheck.go).
		c.pre = prechecker.Check(c.pdu)
	}
	ck.finish = func(c *candidate) {
		defer close(c.done)
		if err := s.verifyByKeyRing(ctx, c.pdu, keys); err != nil {
			c.err, c.badSig = fmt.Errorf("bad signature: %w", err), true
			return
		}
		c.pre = prechecker.Check(c.pdu)
	}
	// Each checker takes the next unchecked event, so a core that is busy
	// elsewhere (the store's writer, push rules) does not hold back a
	// fixed share. The handler's goroutine and then the store's writer
	// are checkers too (receivePDUs).
	ck.steal = func(mayFetch bool) bool {
		i := ck.next.Add(1) - 1
		if i >= int64(len(cands)) {
			return false
		}
		check(&cands[i], mayFetch)
		return true
	}
	for range max(1, min(runtime.GOMAXPROCS(0), (len(cands)+9)/10)) - 1 {
		ck.wg.Go(func() {
			for ck.steal(true) {
			}
		})
	}
	return ck
}

// checking is the checks of one transaction's events in progress
// (checkPDUs).
type checking struct {
	cands []candidate
	next  atomic.Int64 // the next candidate to take
	wg    sync.WaitGroup
	// steal checks the next candidate not yet taken, if any.
	steal func(mayFetch bool) bool
	// finish completes the check of a candidate left pending.
	finish func(*candidate)

	mu       sync.Mutex
	pending  []*candidate // left by the writer for the key ring
	waitOnce sync.Once
}

func (ck *checking) taken() int { return int(min(ck.next.Load(), int64(len(ck.cands)))) }

func (ck *checking) pend(c *candidate) {
	ck.mu.Lock()
	ck.pending = append(ck.pending, c)
	ck.mu.Unlock()
}

// wait takes and checks every candidate not yet taken, waits for the
// other checkers, and completes the checks the writer left pending.
// Not in the store's writer: it may fetch keys.
func (ck *checking) wait() {
	ck.waitOnce.Do(func() {
		for ck.steal(true) {
		}
		ck.wg.Wait()
		ck.mu.Lock()
		pending := ck.pending
		ck.mu.Unlock()
		for _, c := range pending {
			ck.finish(c)
		}
	})
}

// checkOrigin checks that origin may send pdu: its sender is a user of
// origin (or it is a member event the resident server relays), and the
// room's server ACL lets origin in (aclErr, checkACL's answer for the
// room).
func checkOrigin(pdu gomatrixserverlib.PDU, origin spec.ServerName, aclErr error) error {
	if serverOf(string(pdu.SenderID())) != string(origin) && pdu.Type() != spec.MRoomMember {
		return errors.New("event was not sent by its sender's server")
	}
	return aclErr
}

// parsePDU parses and signature-checks an event for a room this server is
// in. It returns the event with an error when only the checks failed.
func (s *Service) parsePDU(ctx context.Context, raw json.RawMessage) (gomatrixserverlib.PDU, error) {
	roomID := gjson.GetBytes(raw, "room_id").String()
	version, err := s.cfg.Rooms.RoomVersion(roomID)
	if err != nil {
		return nil, fmt.Errorf("room %q is not known here", roomID)
	}
	pdu, signed, err := parseSigned(version, roomID, raw)
	if pdu == nil || err != nil {
		return pdu, err
	}
	if err := s.verifySigned(ctx, gomatrixserverlib.MustGetRoomVersion(version), pdu, signed, newSigKeys(s.cfg.KeyRing)); err != nil {
		return pdu, fmt.Errorf("bad signature: %w", err)
	}
	return pdu, nil
}

// parseUntrusted parses an event of a known room. gomatrixserverlib
// returns an event failing its content hash already redacted, as the spec
// requires, and panics later on a room ID it parsed but cannot use; both
// are handled here.
func parseUntrusted(version gomatrixserverlib.RoomVersion, roomID string, raw []byte) (gomatrixserverlib.PDU, error) {
	pdu, _, err := parseSigned(version, roomID, raw)
	return pdu, err
}

// parseSigned is parseUntrusted that also returns the bytes the event's
// signatures cover (signingBytes, pdu_verify.go), from which its event ID
// was computed.
func parseSigned(version gomatrixserverlib.RoomVersion, roomID string, raw []byte) (pdu gomatrixserverlib.PDU, signed []byte, err error) {
	ver, err := gomatrixserverlib.GetRoomVersion(version)
	if err != nil {
		return nil, nil, err
	}
	if p, s, ok := parseCanonical(ver, raw); ok { // pdu_parse.go
		return checkParsed(p, s, roomID)
	}
	return parseGeneral(ver, roomID, raw)
}

// checkParsed is the rest of parseSigned for an event parseCanonical
// took: the checks parseGeneral makes around gomatrixserverlib's parse.
func checkParsed(pdu gomatrixserverlib.PDU, signed []byte, roomID string) (gomatrixserverlib.PDU, []byte, error) {
	if _, err := spec.NewRoomID(roomID); err != nil {
		return nil, nil, fmt.Errorf("invalid room ID: %w", err)
	}
	if pdu.RoomID().String() != roomID {
		return nil, nil, errors.New("room ID mismatch")
	}
	if pdu.Depth() < 0 || pdu.Depth() > maxDepth {
		return pdu, nil, errors.New("depth out of range")
	}
	return pdu, signed, nil
}

// parseGeneral is parseSigned through gomatrixserverlib alone (its
// untrusted parse, signingBytes, the event ID set from them), for every
// event parseCanonical does not take.
func parseGeneral(ver gomatrixserverlib.IRoomVersion, roomID string, raw []byte) (pdu gomatrixserverlib.PDU, signed []byte, err error) {
	pdu, err = ver.NewEventFromUntrustedJSON(raw)
	if err != nil {
		if pdu != nil {
			pdu.EventID()
		}
		return pdu, nil, fmt.Errorf("invalid event: %w", err)
	}
	if _, err := spec.NewRoomID(roomID); err != nil {
		return nil, nil, fmt.Errorf("invalid room ID: %w", err)
	}
	if pdu.RoomID().String() != roomID {
		return nil, nil, errors.New("room ID mismatch")
	}
	if signed, err = signingBytes(ver, pdu.JSON()); err != nil {
		return nil, nil, fmt.Errorf("invalid event: %w", err)
	}
	if pdu, err = withEventID(ver, pdu, signed); err != nil {
		return nil, nil, fmt.Errorf("invalid event: %w", err)
	}
	if pdu.Depth() < 0 || pdu.Depth() > maxDepth {
		return pdu, nil, errors.New("depth out of range")
	}
	return pdu, signed, nil
}

// maxDepth is the largest depth the spec's canonical JSON allows.
const maxDepth = 1<<53 - 1

// fetchTimeout bounds the time the events of one inbound transaction may
// spend fetching the events they refer to from other servers.
const fetchTimeout = 20 * time.Second

// maxGap bounds the events fetched to fill one gap before this server
// asks for the state instead (§"Retrieving missing events").
const maxGap = 20

// ingest hands a checked event to the room engine, first fetching what
// it refers to and this server lacks (depth counts nested fetches).
func (s *Service) ingest(ctx context.Context, origin spec.ServerName, pdu gomatrixserverlib.PDU, depth int) error {
	err := s.cfg.Rooms.Ingest(ctx, pdu, room.IngestOptions{})
	missing, ok := room.IsMissing(err)
	if !ok || depth > 0 {
		return err
	}
	roomID := pdu.RoomID().String()
	// The fetches below wait on another server; bound them together so a
	// peer that never answers cannot hold a transaction for long.
	fetchCtx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if len(missing.Auth) > 0 {
		if err := s.fetchAuthChain(fetchCtx, origin, roomID, pdu.EventID()); err != nil {
			return fmt.Errorf("fetch auth events: %w", err)
		}
	}
	if len(missing.Prev) > 0 {
		s.fetchMissingPrevs(fetchCtx, origin, pdu)
		if err := s.cfg.Rooms.Ingest(ctx, pdu, room.IngestOptions{}); !isMissing(err) {
			return err
		}
		// Still a gap: take the state at each missing prev event from
		// the origin instead of its history.
		for _, prev := range pdu.PrevEventIDs() {
			if err := s.fetchStateAt(fetchCtx, origin, roomID, prev); err != nil {
				return fmt.Errorf("fetch state at %s: %w", prev, err)
			}
		}
	}
	return s.cfg.Rooms.Ingest(ctx, pdu, room.IngestOptions{})
}

func isMissing(err error) bool {
	_, ok := room.IsMissing(err)
	return ok
}

// fetchMissingPrevs asks the origin for the events between what this
// server has and pdu (POST get_missing_events) and ingests them oldest
// first. Failures leave the gap for fetchStateAt.
func (s *Service) fetchMissingPrevs(ctx context.Context, origin spec.ServerName, pdu gomatrixserverlib.PDU) {
	roomID := pdu.RoomID().String()
	extremities, err := s.cfg.Rooms.Extremities(roomID)
	if err != nil {
		return
	}
	res, err := s.cfg.Client.LookupMissingEvents(ctx, s.cfg.ServerName, origin, roomID, fclient.MissingEvents{
		Limit: maxGap, EarliestEvents: extremities, LatestEvents: []string{pdu.EventID()},
		MinDepth: int(max(0, pdu.Depth()-maxGap*5)),
	}, pdu.Version())
	if err != nil {
		slog.Info("federation: get_missing_events failed", "origin", origin, "room", roomID, "err", err)
		return
	}
	events := s.checkedEvents(ctx, roomID, res.Events)
	sort.SliceStable(events, func(i, j int) bool { return events[i].Depth() < events[j].Depth() })
	for _, p := range events {
		if err := s.ingest(ctx, origin, p, 1); err != nil && !isMissing(err) {
			slog.Info("federation: missing event refused", "event_id", p.EventID(), "err", err)
		}
	}
}
