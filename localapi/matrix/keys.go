package matrix

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// SetKeys connects the end-to-end encryption key service; without it the
// E2EE endpoints answer M_UNRECOGNIZED and /sync leaves its sections empty.
func (s *Server) SetKeys(k *e2ee.Service) { s.keys = k }

// keysRoutes registers Client-Server API §"End-to-end encryption".
func (s *Server) keysRoutes() {
	m := s.mux
	const v3 = "/_matrix/client/v3"
	a := func(h authedHandler) http.HandlerFunc {
		return s.authed(func(w http.ResponseWriter, r *http.Request, c *caller) error {
			if s.keys == nil {
				return matrixerr.Unrecognized("end-to-end encryption is not enabled")
			}
			return h(w, r, c)
		})
	}
	m.HandleFunc("POST "+v3+"/keys/upload", a(s.keysUpload))
	m.HandleFunc("POST "+v3+"/keys/upload/{deviceId}", a(s.keysUpload)) // deprecated form
	m.HandleFunc("POST "+v3+"/keys/query", a(s.keysQuery))
	m.HandleFunc("POST "+v3+"/keys/claim", a(s.keysClaim))
	m.HandleFunc("GET "+v3+"/keys/changes", a(s.keysChanges))
	m.HandleFunc("POST "+v3+"/keys/device_signing/upload", a(s.crossSigningUpload))
	m.HandleFunc("POST "+v3+"/keys/signatures/upload", a(s.signaturesUpload))
	m.HandleFunc("PUT "+v3+"/sendToDevice/{eventType}/{txnId}", a(s.sendToDevice))
	s.backupRoutes(v3, a)
}

func (s *Server) keysUpload(w http.ResponseWriter, r *http.Request, c *caller) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	up, err := e2ee.DecodeUpload(body, c.UserID, c.DeviceID)
	if err != nil {
		return err
	}
	counts, err := s.keys.Store(r.Context(), c.UserID, c.DeviceID, up)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"one_time_key_counts": counts})
	return nil
}

func (s *Server) keysQuery(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.DeviceKeys == nil {
		return matrixerr.MissingParam("device_keys is required")
	}
	res, err := s.keys.Query(c.UserID, req.DeviceKeys, func(userID, deviceID string) string {
		if d, err := s.accounts.Device(s.accounts.Localpart(userID), deviceID); err == nil {
			return d.DisplayName
		}
		return ""
	})
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) keysClaim(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.OneTimeKeys == nil {
		return matrixerr.MissingParam("one_time_keys is required")
	}
	otks, failures, err := s.keys.Claim(r.Context(), req.OneTimeKeys)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"one_time_keys": otks, "failures": failures})
	return nil
}

// keysChanges implements GET /keys/changes: between two sync tokens, users
// who share a room with the caller (or the caller) whose device lists
// changed or who started sharing a room, and users who stopped.
func (s *Server) keysChanges(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	if q.Get("from") == "" || q.Get("to") == "" {
		return matrixerr.MissingParam("from and to are required")
	}
	from, err := parseSyncToken(q.Get("from"))
	if err != nil {
		return err
	}
	to, err := parseSyncToken(q.Get("to"))
	if err != nil {
		return err
	}
	if from.pos > to.pos {
		return matrixerr.InvalidParam("from is after to")
	}
	// The member events between the tokens, as a sync would return them,
	// tell who started or stopped sharing a room with the caller.
	rooms, err := s.rooms.Sync(room.SyncRequest{UserID: c.UserID, Device: c.Session, Since: from.pos, Now: to.pos,
		Timeline: room.EventFilter{Types: []string{"m.room.member"}}, Ephemeral: room.EventFilter{Limit: -1}})
	if err != nil {
		return err
	}
	joined, left := map[string][]any{}, [][]any{}
	for id, jr := range rooms.Join {
		joined[id] = clientEvents(jr.State, jr.Timeline.Events)
	}
	for _, lr := range rooms.Leave {
		left = append(left, clientEvents(lr.State, lr.Timeline.Events))
	}
	changed, gone, err := s.deviceListChanges(c, from.pos, to.pos, joined, left)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"changed": changed, "left": gone})
	return nil
}

func clientEvents(lists ...[]room.ClientEvent) []any {
	var out []any
	for _, l := range lists {
		for _, ev := range l {
			out = append(out, ev)
		}
	}
	return out
}

// crossSigningUpload implements POST /keys/device_signing/upload. UIA with
// the password is asked for only when the spec requires it: when the
// upload would replace a master key already stored.
func (s *Server) crossSigningUpload(w http.ResponseWriter, r *http.Request, c *caller) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var up e2ee.CrossSigningUpload
	if err := decode(body, &up); err != nil {
		return err
	}
	err = s.keys.UploadCrossSigning(r.Context(), c.UserID, up, false)
	if errors.Is(err, e2ee.ErrNeedUIA) {
		if err = s.passwordUIA(r, body, c); err == nil {
			err = s.keys.UploadCrossSigning(r.Context(), c.UserID, up, true)
		}
	}
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Server) signaturesUpload(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req map[string]map[string]json.RawMessage
	if err := readJSON(r, &req); err != nil {
		return err
	}
	failures, err := s.keys.UploadSignatures(r.Context(), c.UserID, req)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"failures": failures})
	return nil
}
