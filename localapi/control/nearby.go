package control

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// NearbySwitcher is the part of the backend that switches whether an
// account is announced to people nearby (issue 11); a backend without it
// answers 404 for these routes.
type NearbySwitcher interface {
	// SetNearby switches the opt-in of a local account.
	SetNearby(ctx context.Context, name string, on bool) (userID string, err error)
	// NearbyAccounts lists the user IDs of the accounts opted in.
	NearbyAccounts() ([]string, error)
}

// NearbyAccount is POST /_hearth/v1/accounts/nearby's answer.
type NearbyAccount struct {
	UserID string `json:"user_id"`
	Nearby bool   `json:"nearby"`
}

func (s *Server) nearbyRoutes() {
	s.mux.Handle("GET /_hearth/v1/accounts/nearby", handlerFunc(s.nearbyAccounts))
	s.mux.Handle("POST /_hearth/v1/accounts/nearby", handlerFunc(s.setNearby))
}

func (s *Server) nearbySwitcher() (NearbySwitcher, error) {
	n, ok := s.backend.(NearbySwitcher)
	if !ok {
		return nil, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "people nearby are not supported"}
	}
	return n, nil
}

// nearbyAccounts lists the accounts announced to people nearby.
func (s *Server) nearbyAccounts(w http.ResponseWriter, r *http.Request) error {
	n, err := s.nearbySwitcher()
	if err != nil {
		return err
	}
	ids, err := n.NearbyAccounts()
	if err != nil {
		return err
	}
	if ids == nil {
		ids = []string{}
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"accounts": ids})
	return nil
}

// setNearby switches whether an account is announced to people nearby;
// the body is {"name": localpart, "nearby": true|false}. One fixed path,
// so the console's session may call it (console.go).
func (s *Server) setNearby(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name   string `json:"name"`
		Nearby *bool  `json:"nearby"`
	}
	if err := readBody(r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return BadRequest("name", "name is required")
	}
	if req.Nearby == nil {
		return BadRequest("nearby", "nearby (true or false) is required")
	}
	n, err := s.nearbySwitcher()
	if err != nil {
		return err
	}
	id, err := n.SetNearby(r.Context(), req.Name, *req.Nearby)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, NearbyAccount{UserID: id, Nearby: *req.Nearby})
	return nil
}

// PeopleNearby is the one line the CLI, the tray and the console show for
// the people trusted peers announce: "People nearby: Anna (anna-laptop-…),
// Bob Builder (ben-laptop-…)", at most max people and "and N more". It is
// empty when no peer announces anyone.
func PeopleNearby(peers []Peer, max int) string {
	var names []string
	n := 0
	for _, p := range peers {
		for _, who := range p.People {
			n++
			if len(names) < max {
				names = append(names, personName(who)+" ("+shortServerName(p.ServerName)+")")
			}
		}
	}
	if n == 0 {
		return ""
	}
	s := "People nearby: " + strings.Join(names, ", ")
	if n > len(names) {
		s += fmt.Sprintf(" and %d more", n-len(names))
	}
	return s
}

func personName(p Person) string {
	if p.DisplayName != "" {
		return p.DisplayName
	}
	lp, _, _ := strings.Cut(strings.TrimPrefix(p.UserID, "@"), ":")
	return lp
}

// shortServerName shows a default LAN name, <machine>-<6 chars>.local,
// as "<machine>-…": the suffix only tells apart machines of one name.
func shortServerName(name string) string {
	base, ok := strings.CutSuffix(name, ".local")
	if i := strings.LastIndexByte(base, '-'); ok && i > 0 && len(base)-i-1 == 6 {
		return base[:i+1] + "…"
	}
	return name
}
