package control

import (
	"context"
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// PeerForgetter is the part of the backend that forgets a LAN peer's
// pinned key (discovery.Service.Forget); a backend without it answers
// 409, as when LAN discovery is off.
type PeerForgetter interface {
	// ForgetPeer deletes the pin of name; false when there was none.
	ForgetPeer(ctx context.Context, name string) (bool, error)
}

// PeerKeyDecider is the part of the backend that records the owner's
// answer to a LAN peer's key change (discovery.Service.Accept/Refuse).
type PeerKeyDecider interface {
	// DecidePeerKey accepts (pins) or keeps refusing the key name
	// announces now; false when name is not listed with a changed key.
	DecidePeerKey(ctx context.Context, name string, accept bool) (bool, error)
}

// DecideResult is POST /_hearth/v1/peers/{name}/accept and /refuse.
type DecideResult struct {
	ServerName string `json:"server_name"`
	Accepted   bool   `json:"accepted"` // false: refused
}

// ForgetResult is POST /_hearth/v1/peers/{name}/forget.
type ForgetResult struct {
	ServerName string `json:"server_name"`
	Forgotten  bool   `json:"forgotten"`
}

func (s *Server) peersRoutes() {
	s.mux.Handle("POST /_hearth/v1/peers/{name}/forget", handlerFunc(s.forgetPeer))
	s.mux.Handle("POST /_hearth/v1/peers/{name}/accept", handlerFunc(func(w http.ResponseWriter, r *http.Request) error { return s.decidePeerKey(w, r, true) }))
	s.mux.Handle("POST /_hearth/v1/peers/{name}/refuse", handlerFunc(func(w http.ResponseWriter, r *http.Request) error { return s.decidePeerKey(w, r, false) }))
}

// decidePeerKey is the owner's answer to a peer whose key changed:
// accept pins the key it announces now (a reinstall), refuse keeps
// refusing that key without flagging it again. 404 when name is not
// listed with a changed key.
func (s *Server) decidePeerKey(w http.ResponseWriter, r *http.Request, accept bool) error {
	name := r.PathValue("name")
	if name == "" || len(name) > 255 {
		return BadRequest("name", "a server name is needed")
	}
	f, ok := s.backend.(PeerKeyDecider)
	if !ok || !s.backend.Peers().Enabled {
		return &Error{Status: http.StatusConflict, Code: "lan_discovery_off", Message: "LAN discovery is off"}
	}
	done, err := f.DecidePeerKey(r.Context(), name, accept)
	if err != nil {
		return err
	}
	if !done {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no peer named " + name + " with a changed key"}
	}
	matrixerr.WriteJSON(w, http.StatusOK, DecideResult{ServerName: name, Accepted: accept})
	return nil
}

// forgetPeer deletes a peer's pinned key, so its next announcement is
// trusted on first use: how the owner accepts a peer's new key, or
// cleans up a name that will not come back. 404 when nothing is pinned.
func (s *Server) forgetPeer(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if name == "" || len(name) > 255 {
		return BadRequest("name", "a server name is needed")
	}
	f, ok := s.backend.(PeerForgetter)
	if !ok || !s.backend.Peers().Enabled {
		return &Error{Status: http.StatusConflict, Code: "lan_discovery_off", Message: "LAN discovery is off"}
	}
	done, err := f.ForgetPeer(r.Context(), name)
	if err != nil {
		return err
	}
	if !done {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no pinned key or peer named " + name}
	}
	matrixerr.WriteJSON(w, http.StatusOK, ForgetResult{ServerName: name, Forgotten: true})
	return nil
}
