package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sort"
	"sync"
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
func (s *Service) send(w http.ResponseWriter, r *request) {
	key := store.Key(string(r.origin), r.PathValue("txnID"))
	var prior []byte
	s.cfg.DB.View(func(tx *store.Tx) error {
		prior = append(prior, tx.Get(store.FedTxns, key)...)
		return nil
	})
	if prior != nil {
		w.Header().Set("Content-Type", "application/json")
		w.Write(prior)
		return
	}
	var txn transaction
	if err := json.Unmarshal(r.body, &txn); err != nil {
		matrixerr.Write(w, matrixerr.NotJSON("transaction is not valid JSON"))
		return
	}
	if len(txn.PDUs) > maxPDUs || len(txn.EDUs) > maxEDUs {
		matrixerr.Write(w, matrixerr.BadJSON(fmt.Sprintf("a transaction holds at most %d PDUs and %d EDUs", maxPDUs, maxEDUs)))
		return
	}
	if txn.Origin != "" && txn.Origin != string(r.origin) {
		matrixerr.Write(w, matrixerr.Forbidden("transaction origin does not match the request's signer"))
		return
	}
	resp := fclient.RespSend{PDUs: map[string]fclient.PDUResult{}}
	for id, err := range s.receivePDUs(r.Context(), r.origin, txn.PDUs) {
		res := fclient.PDUResult{}
		if err != nil {
			res.Error = err.Error()
			slog.Info("federation: PDU refused", "origin", r.origin, "event_id", id, "err", err)
		}
		resp.PDUs[id] = res
	}
	for _, edu := range txn.EDUs {
		s.receiveEDU(r.Context(), r.origin, edu)
	}
	body, _ := json.Marshal(resp)
	if err := s.cfg.DB.Update(r.Context(), func(tx *store.Tx) error {
		return tx.Put(store.FedTxns, key, body)
	}); err != nil {
		matrixerr.Write(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

// receivePDUs runs the spec's checks on receipt of a PDU (§"Checks
// performed on receipt of a PDU") on a transaction's events and stores
// those that pass, returning a result per event ID. The checks that need
// no room state come first: an event of a room a local user is in, valid
// for the room's version, sent by its sender's server (or relayed by the
// resident server of a membership handshake), allowed by the room's
// server ACL, signed by the servers that must sign it (all signatures in
// one key-ring call); a hash mismatch leaves the event redacted. The room
// engine then checks and stores them all in one store transaction; an
// event that refers to events this server lacks is retried on its own
// after fetching them.
func (s *Service) receivePDUs(ctx context.Context, origin spec.ServerName, raws []json.RawMessage) map[string]error {
	results := map[string]error{}
	inRoom := map[string]bool{}     // rooms a local user is joined to, asked once per transaction
	notJoining := map[string]bool{} // rooms not joined with no join in flight either
	var pdus []gomatrixserverlib.PDU
	for _, raw := range raws {
		roomID := gjson.GetBytes(raw, "room_id").String()
		joined, seen := inRoom[roomID]
		if !seen {
			joined = s.cfg.Rooms.HasLocalJoined(roomID)
			inRoom[roomID] = joined
		}
		if !joined && !notJoining[roomID] {
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
		pdu, err := s.parseForRoom(raw)
		if pdu == nil {
			continue // not even an event ID: nothing to answer about
		}
		if err == nil {
			err = s.checkOrigin(pdu, origin)
		}
		if err != nil {
			results[pdu.EventID()] = err
			continue
		}
		pdus = append(pdus, pdu)
	}
	if len(pdus) == 0 {
		return results
	}
	var signed []gomatrixserverlib.PDU
	for i, err := range s.verifySignatures(ctx, pdus) {
		if err != nil {
			results[pdus[i].EventID()] = fmt.Errorf("bad signature: %w", err)
			continue
		}
		signed = append(signed, pdus[i])
	}
	// Events with gaps share one deadline for fetching what they miss, so
	// a peer that never answers cannot hold the transaction for long.
	fetchCtx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	for i, err := range s.cfg.Rooms.IngestBatch(ctx, signed) {
		if isMissing(err) {
			err = s.ingest(fetchCtx, origin, signed[i], 0)
		}
		results[signed[i].EventID()] = err
	}
	return results
}

// verifySignatures checks the events' signatures, a share of them on each
// core: ed25519 verification is most of a transaction's cost. The result
// is aligned with pdus.
func (s *Service) verifySignatures(ctx context.Context, pdus []gomatrixserverlib.PDU) []error {
	errs := make([]error, len(pdus))
	workers := min(runtime.GOMAXPROCS(0), (len(pdus)+9)/10)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*len(pdus)/workers, (w+1)*len(pdus)/workers
		wg.Go(func() {
			copy(errs[lo:hi], gomatrixserverlib.VerifyAllEventSignatures(ctx, pdus[lo:hi], s.cfg.KeyRing, userIDForSender))
		})
	}
	wg.Wait()
	return errs
}

// checkOrigin checks that origin may send pdu: its sender is a user of
// origin (or it is a member event the resident server relays), and the
// room's server ACL lets origin in.
func (s *Service) checkOrigin(pdu gomatrixserverlib.PDU, origin spec.ServerName) error {
	if serverOf(string(pdu.SenderID())) != string(origin) && pdu.Type() != spec.MRoomMember {
		return errors.New("event was not sent by its sender's server")
	}
	return s.checkACL(pdu.RoomID().String(), origin) // Server ACLs (acl.go)
}

// parseForRoom parses an event of a room this server knows, for that
// room's version.
func (s *Service) parseForRoom(raw json.RawMessage) (gomatrixserverlib.PDU, error) {
	roomID := gjson.GetBytes(raw, "room_id").String()
	version, err := s.cfg.Rooms.RoomVersion(roomID)
	if err != nil {
		return nil, fmt.Errorf("room %q is not known here", roomID)
	}
	return parseUntrusted(version, roomID, raw)
}

// parsePDU parses and signature-checks an event for a room this server is
// in. It returns the event with an error when only the checks failed.
func (s *Service) parsePDU(ctx context.Context, raw json.RawMessage) (gomatrixserverlib.PDU, error) {
	pdu, err := s.parseForRoom(raw)
	if pdu == nil || err != nil {
		return pdu, err
	}
	if err := gomatrixserverlib.VerifyEventSignatures(ctx, pdu, s.cfg.KeyRing, userIDForSender); err != nil {
		return pdu, fmt.Errorf("bad signature: %w", err)
	}
	return pdu, nil
}

// parseUntrusted parses an event of a known room. gomatrixserverlib
// returns an event failing its content hash already redacted, as the spec
// requires, and panics later on a room ID it parsed but cannot use; both
// are handled here.
func parseUntrusted(version gomatrixserverlib.RoomVersion, roomID string, raw []byte) (pdu gomatrixserverlib.PDU, err error) {
	ver, err := gomatrixserverlib.GetRoomVersion(version)
	if err != nil {
		return nil, err
	}
	pdu, err = ver.NewEventFromUntrustedJSON(raw)
	if err != nil {
		if pdu != nil {
			pdu.EventID()
		}
		return pdu, fmt.Errorf("invalid event: %w", err)
	}
	if _, err := spec.NewRoomID(roomID); err != nil {
		return nil, fmt.Errorf("invalid room ID: %w", err)
	}
	if pdu.RoomID().String() != roomID {
		return nil, errors.New("room ID mismatch")
	}
	if pdu.Depth() < 0 || pdu.Depth() > maxDepth {
		return pdu, errors.New("depth out of range")
	}
	pdu.EventID()
	return pdu, nil
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
