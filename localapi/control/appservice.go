package control

import (
	"net/http"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Appservices is the part of the backend that manages application
// services (issue 16); a backend without it answers 404.
type Appservices interface {
	Appservices() []Appservice
	// AddAppservice registers the registration file's YAML; bad input
	// is a *Error with status 400.
	AddAppservice(registration string) (Appservice, error)
	// RemoveAppservice deletes a registration; unknown: 404.
	RemoveAppservice(id string) error
}

// Appservice is one registered application service and its health.
type Appservice struct {
	ID              string   `json:"id"`
	URL             string   `json:"url,omitempty"`
	SenderUserID    string   `json:"sender"`
	UserNamespaces  []string `json:"user_namespaces,omitempty"`
	AliasNamespaces []string `json:"alias_namespaces,omitempty"`
	RoomNamespaces  []string `json:"room_namespaces,omitempty"`
	RateLimited     bool     `json:"rate_limited"`
	// Health: the last transaction the appservice acknowledged, how
	// many events wait for it, the last failure.
	LastSuccess time.Time `json:"last_success,omitzero"`
	Queued      int       `json:"queued"`
	LastError   string    `json:"last_error,omitempty"`
	// Dropped: events that found the queue full while it was away.
	Dropped uint64 `json:"dropped,omitempty"`
}

func (s *Server) appserviceRoutes() {
	with := func(fn func(a Appservices, w http.ResponseWriter, r *http.Request) error) handlerFunc {
		return func(w http.ResponseWriter, r *http.Request) error {
			a, ok := s.backend.(Appservices)
			if !ok {
				return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such control endpoint"}
			}
			return fn(a, w, r)
		}
	}
	s.mux.Handle("GET /_hearth/v1/appservices", with(func(a Appservices, w http.ResponseWriter, r *http.Request) error {
		matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"appservices": a.Appservices()})
		return nil
	}))
	s.mux.Handle("POST /_hearth/v1/appservices", with(func(a Appservices, w http.ResponseWriter, r *http.Request) error {
		var req struct {
			Registration string `json:"registration"`
		}
		if err := readBody(r, &req); err != nil {
			return err
		}
		out, err := a.AddAppservice(req.Registration)
		if err != nil {
			return err
		}
		matrixerr.WriteJSON(w, http.StatusOK, out)
		return nil
	}))
	s.mux.Handle("DELETE /_hearth/v1/appservices/{id}", with(func(a Appservices, w http.ResponseWriter, r *http.Request) error {
		if err := a.RemoveAppservice(r.PathValue("id")); err != nil {
			return err
		}
		matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	}))
}
