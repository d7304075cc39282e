package serverkeys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hearth-chat/hearth/federation/ratelimit"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Limits on the unauthenticated notary endpoint: every server named may
// cost us an outbound fetch, so one request may name only a few.
const (
	maxQueryBody    = 64 << 10
	maxQueryServers = 32
	maxQueryKeyIDs  = 256
	parallelFetches = 8
	// minRefetch spaces out fetches of one server's keys, whatever the
	// queries ask for (§"Publishing Keys": requesting servers should limit
	// how often they query).
	minRefetch       = time.Minute
	queryParamMinTS  = "minimum_valid_until_ts"
	serverNamePathID = "serverName"
	// notaryRate and notaryBurst limit how many servers one client
	// address may name (issue 10): without them anyone could make us
	// fetch keys from any public server, at our expense and in our name,
	// as fast as they can send queries. A burst is two full queries;
	// the rate is far above what a peer that trusts us as its notary
	// asks for while joining a room.
	notaryRate       = 2 // servers named per second, sustained
	notaryBurst      = 2 * maxQueryServers
	maxNotaryClients = 4096
)

// Register adds the key server endpoints to mux. They take no X-Matrix
// authentication: the answers are signed, and a server that has no keys
// of ours yet could not authenticate anyway (§"Retrieving server keys").
func (k *Keys) Register(mux *http.ServeMux) {
	mux.Handle("GET /_matrix/key/v2/server", matrixerr.HandlerFunc(k.serveOwn))
	mux.Handle("GET /_matrix/key/v2/query/{"+serverNamePathID+"}", matrixerr.HandlerFunc(k.serveQueryOne))
	mux.Handle("POST /_matrix/key/v2/query", matrixerr.HandlerFunc(k.serveQuery))
}

// ownResponse is our signed key response (§"Publishing Keys"). The
// old_verify_keys object is always present, even when empty, because
// peers index into it.
func (k *Keys) ownResponse(now time.Time) ([]byte, error) {
	pub := k.public()
	if pub == nil {
		return nil, errors.New("serverkeys: identity has no valid signing key")
	}
	fields := gomatrixserverlib.ServerKeyFields{
		ServerName:    k.id.ServerName,
		VerifyKeys:    map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{k.id.KeyID: {Key: spec.Base64Bytes(pub)}},
		ValidUntilTS:  spec.AsTimestamp(now.Add(keyValidity)),
		OldVerifyKeys: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{},
	}
	for _, o := range k.id.Old {
		fields.OldVerifyKeys[o.KeyID] = gomatrixserverlib.OldVerifyKey{
			VerifyKey: gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(o.Public)}, ExpiredTS: o.ExpiredTS}
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("serverkeys: encode own keys: %w", err)
	}
	signed, err := gomatrixserverlib.SignJSON(string(k.id.ServerName), k.id.KeyID, k.id.Key, body)
	if err != nil {
		return nil, fmt.Errorf("serverkeys: sign own keys: %w", err)
	}
	return signed, nil
}

func (k *Keys) serveOwn(w http.ResponseWriter, r *http.Request) error {
	body, err := k.ownResponse(time.Now())
	if err != nil {
		return err
	}
	writeSigned(w, body)
	return nil
}

// query is one server a notary request asks about.
type query struct {
	server   spec.ServerName
	keyIDs   []gomatrixserverlib.KeyID
	minValid spec.Timestamp
}

func (k *Keys) serveQueryOne(w http.ResponseWriter, r *http.Request) error {
	q := query{server: spec.ServerName(r.PathValue(serverNamePathID))}
	if !validServerName(q.server) {
		return matrixerr.InvalidParam("invalid server name")
	}
	if s := r.URL.Query().Get(queryParamMinTS); s != "" {
		ts, err := strconv.ParseUint(s, 10, 63)
		if err != nil {
			return matrixerr.InvalidParam(queryParamMinTS + " must be a non-negative integer")
		}
		q.minValid = spec.Timestamp(ts)
	}
	if err := k.notaryLimit(r, 1); err != nil {
		return err
	}
	return k.answer(r.Context(), w, []query{q})
}

func (k *Keys) serveQuery(w http.ResponseWriter, r *http.Request) error {
	qs, err := readQuery(w, r)
	if err != nil {
		return err
	}
	if err := k.notaryLimit(r, len(qs)); err != nil {
		return err
	}
	return k.answer(r.Context(), w, qs)
}

// notaryLimit spends one token of the client's address per server a
// query names, or, if it has not that many, is 429 M_LIMIT_EXCEEDED.
// Every server named counts, cached or not, so the limit does not depend
// on what the cache holds.
func (k *Keys) notaryLimit(r *http.Request, servers int) error {
	wait := k.notaryLimits.Allow(ratelimit.ClientKey(r.RemoteAddr), float64(servers), time.Now())
	if wait == 0 {
		return nil
	}
	return matrixerr.LimitExceeded(wait.Milliseconds() + 1)
}

// readQuery decodes and bounds a POST /key/v2/query body before anything
// is fetched or stored.
func readQuery(w http.ResponseWriter, r *http.Request) ([]query, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxQueryBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, matrixerr.TooLarge("request body too large")
		}
		return nil, matrixerr.BadJSON("could not read the request body")
	}
	if !utf8.Valid(data) || !json.Valid(data) {
		return nil, matrixerr.NotJSON("request body is not valid JSON")
	}
	var req gomatrixserverlib.PublicKeyNotaryLookupRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, matrixerr.BadJSON("bad server_keys: " + err.Error())
	}
	if req.ServerKeys == nil {
		return nil, matrixerr.BadJSON("server_keys is required and must be an object")
	}
	if len(req.ServerKeys) > maxQueryServers {
		return nil, matrixerr.TooLarge(fmt.Sprintf("at most %d servers per query", maxQueryServers))
	}
	qs := make([]query, 0, len(req.ServerKeys))
	nKeys := 0
	for server, criteria := range req.ServerKeys {
		if !validServerName(server) {
			return nil, matrixerr.InvalidParam(fmt.Sprintf("invalid server name %q", server))
		}
		nKeys += len(criteria)
		if nKeys > maxQueryKeyIDs {
			return nil, matrixerr.TooLarge(fmt.Sprintf("at most %d key IDs per query", maxQueryKeyIDs))
		}
		q := query{server: server}
		for id, c := range criteria {
			q.keyIDs = append(q.keyIDs, id)
			q.minValid = max(q.minValid, c.MinimumValidUntilTS)
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// answer looks every query up (in parallel, bounded), adds our signature
// to each response found and writes {"server_keys": [...]}. Servers we
// cannot reach and know nothing of are left out, as the spec says.
func (k *Keys) answer(ctx context.Context, w http.ResponseWriter, qs []query) error {
	found := make([]json.RawMessage, len(qs))
	sem := make(chan struct{}, parallelFetches)
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			raw := k.lookup(ctx, q)
			if raw == nil {
				return
			}
			signed, err := gomatrixserverlib.SignJSON(string(k.id.ServerName), k.id.KeyID, k.id.Key, raw)
			if err != nil {
				k.log.Warn("cannot re-sign key response", "server", q.server, "err", err)
				return
			}
			found[i] = signed
		})
	}
	wg.Wait()
	out := struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}{ServerKeys: []json.RawMessage{}}
	for _, f := range found {
		if f != nil {
			out.ServerKeys = append(out.ServerKeys, f)
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		return fmt.Errorf("serverkeys: encode query answer: %w", err)
	}
	writeSigned(w, body)
	return nil
}

// lookup returns the self-signed key response of q.server: from the cache
// while it is fresh (younger than half its lifetime, §"Publishing Keys"),
// valid until q.minValid and holding the key IDs asked for, or when it was
// fetched less than minRefetch ago; otherwise fetched from the server;
// failing that, the last one cached, so that old signatures can still be
// checked.
func (k *Keys) lookup(ctx context.Context, q query) []byte {
	now := time.Now()
	if k.isLocal(q.server) {
		own, err := k.ownResponse(now)
		if err != nil {
			k.log.Error("cannot build own key response", "err", err)
			return nil
		}
		return own
	}
	nowTS := spec.AsTimestamp(now)
	minValid := q.minValid
	if minValid == 0 {
		minValid = nowTS
	}
	cached, ok := k.loadResponse(q.server)
	recent := ok && now.Sub(cached.FetchedAt.Time()) < minRefetch
	if recent || ok && cached.fresh(nowTS) && cached.Keys.ValidUntilTS >= minValid && cached.has(q.keyIDs) {
		return cached.Keys.Raw
	}
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	keys, err := k.client.GetServerKeys(fctx, q.server)
	if err == nil {
		err = k.saveResponse(ctx, q.server, keys)
	}
	if err == nil {
		return keys.Raw
	}
	k.log.Debug("notary fetch failed", "server", q.server, "err", err)
	if ok {
		return cached.Keys.Raw
	}
	return nil
}

func (r storedResponse) fresh(now spec.Timestamp) bool {
	v := r.Keys.ValidUntilTS
	return v > r.FetchedAt && now < r.FetchedAt+(v-r.FetchedAt)/2
}

func (r storedResponse) has(ids []gomatrixserverlib.KeyID) bool {
	for _, id := range ids {
		_, cur := r.Keys.VerifyKeys[id]
		_, old := r.Keys.OldVerifyKeys[id]
		if !cur && !old {
			return false
		}
	}
	return true
}

func validServerName(s spec.ServerName) bool {
	_, _, ok := spec.ParseAndValidateServerName(s)
	return ok && len(s) <= 255 && !bytes.ContainsRune([]byte(s), 0)
}

// writeSigned answers 200 with body as it is. It is not
// matrixerr.WriteJSON because the body is signed JSON already encoded:
// encoding it again would add a newline, and could change the bytes the
// signatures cover.
func writeSigned(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}
