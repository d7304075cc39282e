package control

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// DiscoverySwitcher is the part of the backend that switches LAN
// discovery (lan_discovery = on|browse|off) while the daemon runs; a
// backend without it answers 404.
type DiscoverySwitcher interface {
	// SetDiscoveryMode checks mode, stores lan_discovery = mode in the
	// config file and applies it at once.
	SetDiscoveryMode(mode string) error
	Discovery() DiscoveryStatus
}

// DiscoveryStatus is GET /_hearth/v1/discovery and the answer to POST
// /_hearth/v1/discovery/mode.
type DiscoveryStatus struct {
	// Mode is the mode in force: on (find peers and announce this
	// server), browse (find peers, never announce) or off.
	Mode string `json:"mode"`
	// Running: discovery runs (on or browse, and its socket opened).
	Running bool `json:"running"`
}

func (s *Server) discoveryRoutes() {
	s.mux.Handle("GET /_hearth/v1/discovery", handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		sw, ok := s.backend.(DiscoverySwitcher)
		if !ok {
			return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such control endpoint"}
		}
		matrixerr.WriteJSON(w, http.StatusOK, sw.Discovery())
		return nil
	}))
	s.mux.Handle("POST /_hearth/v1/discovery/mode", handlerFunc(s.discoveryMode))
}

// discoveryMode is POST /_hearth/v1/discovery/mode {"mode": "browse"}:
// the tray's and CLI's switch of LAN discovery (issue 11: "discovery
// can be set to browse-only or switched off").
func (s *Server) discoveryMode(w http.ResponseWriter, r *http.Request) error {
	sw, ok := s.backend.(DiscoverySwitcher)
	if !ok {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such control endpoint"}
	}
	var req struct {
		Mode string `json:"mode"`
	}
	if err := readBody(r, &req); err != nil {
		return err
	}
	if err := sw.SetDiscoveryMode(req.Mode); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, sw.Discovery())
	return nil
}
