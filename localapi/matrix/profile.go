package matrix

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// getProfile serves GET /profile/{userId} and /profile/{userId}/{field}.
func (s *Server) getProfile(w http.ResponseWriter, r *http.Request) error {
	if uid := r.PathValue("userId"); s.fed != nil && serverOf(uid) != "" && serverOf(uid) != s.accounts.ServerName() {
		return s.remoteProfile(w, r, uid)
	}
	lp := s.accounts.Localpart(r.PathValue("userId"))
	if s.hasToken(r) {
		// An appservice's ghost is made on demand, for a caller with a
		// token only: anyone could otherwise make a bridge create
		// accounts without limit.
		s.queryLocalUser(r.Context(), r.PathValue("userId"))
	}
	u, err := s.accounts.Get(lp)
	if err != nil {
		return err
	}
	if u == nil || lp == "" || u.Deactivated {
		return matrixerr.NotFound("profile not found")
	}
	return writeProfile(w, r, u.DisplayName, u.AvatarURL)
}

// remoteProfile asks another server for its user's profile
// (Server-Server API §"Querying for information").
func (s *Server) remoteProfile(w http.ResponseWriter, r *http.Request, userID string) error {
	field := r.PathValue("field")
	if field != "" && field != "displayname" && field != "avatar_url" {
		return matrixerr.NotFound("profile field not set")
	}
	dn, av, err := s.fed.QueryProfile(r.Context(), userID, field)
	if err != nil {
		return err
	}
	return writeProfile(w, r, dn, av)
}

// writeProfile answers GET /profile/{userId} or one {field} of it.
func writeProfile(w http.ResponseWriter, r *http.Request, displayName, avatarURL string) error {
	p := map[string]any{}
	if displayName != "" {
		p["displayname"] = displayName
	}
	if avatarURL != "" {
		p["avatar_url"] = avatarURL
	}
	if field := r.PathValue("field"); field != "" {
		v, ok := p[field]
		if !ok {
			return matrixerr.NotFound("profile field not set")
		}
		matrixerr.WriteJSON(w, http.StatusOK, map[string]any{field: v})
		return nil
	}
	matrixerr.WriteJSON(w, http.StatusOK, p)
	return nil
}

// putProfile serves PUT /profile/{userId}/displayname|avatar_url and
// updates the member event in every joined room, as clients expect.
func (s *Server) putProfile(w http.ResponseWriter, r *http.Request, c *caller) error {
	if r.PathValue("userId") != c.UserID {
		return matrixerr.Forbidden("you may only change your own profile")
	}
	field := r.PathValue("field")
	if field != "displayname" && field != "avatar_url" {
		return matrixerr.Forbidden("only displayname and avatar_url can be set")
	}
	var body map[string]json.RawMessage
	if err := readJSON(r, &body); err != nil {
		return err
	}
	var value string
	if raw, ok := body[field]; !ok {
		return matrixerr.MissingParam(field + " is required")
	} else if err := json.Unmarshal(raw, &value); err != nil {
		return matrixerr.BadJSON(field + " must be a string")
	}
	if len(value) > 256 && field == "displayname" {
		return matrixerr.InvalidParam("displayname is longer than 256 characters")
	}
	var dn, av *string
	if field == "displayname" {
		dn = &value
	} else {
		av = &value
	}
	if err := s.accounts.SetProfile(r.Context(), c.Localpart, dn, av); err != nil {
		return err
	}
	rooms, _ := s.rooms.JoinedRooms(c.UserID)
	profile := s.profileOf(c)
	for _, id := range rooms {
		// A failure in one room (say, no permission) must not stop the rest.
		s.rooms.ChangeMembership(r.Context(), room.MembershipRequest{Sender: c.UserID, RoomID: id,
			Target: c.UserID, Membership: "join", Profile: profile})
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

func (s *Server) getAccountData(w http.ResponseWriter, r *http.Request, c *caller) error {
	if r.PathValue("userId") != c.UserID {
		return matrixerr.Forbidden("you may only read your own account data")
	}
	b, err := s.accounts.AccountData(c.Localpart, r.PathValue("roomId"), r.PathValue("type"))
	if err != nil {
		return err
	}
	// Account data is stored as the client's JSON: written as it is.
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
	return nil
}

func (s *Server) putAccountData(w http.ResponseWriter, r *http.Request, c *caller) error {
	if r.PathValue("userId") != c.UserID {
		return matrixerr.Forbidden("you may only set your own account data")
	}
	typ, roomID := r.PathValue("type"), r.PathValue("roomId")
	if typ == "m.fully_read" || typ == "m.push_rules" {
		return matrixerr.BadJSON(typ + " is managed by the server").WithStatus(http.StatusMethodNotAllowed)
	}
	if roomID != "" && !strings.HasPrefix(roomID, "!") {
		return matrixerr.InvalidParam("invalid room ID")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if err := s.accounts.PutAccountData(r.Context(), c.Localpart, roomID, typ, body); err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
	return nil
}

// userDirectory implements POST /user_directory/search over local users,
// users who share a room with the searcher and people nearby (nearby.go).
func (s *Server) userDirectory(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req struct {
		SearchTerm string `json:"search_term"`
		Limit      int    `json:"limit"`
	}
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.Limit <= 0 {
		req.Limit = 10
	}
	term := strings.ToLower(req.SearchTerm)
	type result struct {
		UserID      string `json:"user_id"`
		DisplayName string `json:"display_name,omitempty"`
		AvatarURL   string `json:"avatar_url,omitempty"`
	}
	results := []result{}
	seen := map[string]bool{}
	consider := func(uid, name, avatar string) {
		if seen[uid] {
			return
		}
		seen[uid] = true
		if strings.Contains(strings.ToLower(uid), term) || strings.Contains(strings.ToLower(name), term) {
			results = append(results, result{UserID: uid, DisplayName: name, AvatarURL: avatar})
		}
	}
	users, err := s.accounts.List()
	if err != nil {
		return err
	}
	for _, u := range users {
		if !u.Deactivated {
			consider(s.accounts.UserID(u.Localpart), u.DisplayName, u.AvatarURL)
		}
	}
	rooms, _ := s.rooms.JoinedRooms(c.UserID)
	for _, id := range rooms {
		members, _ := s.rooms.JoinedMembers(c.UserID, id)
		for uid, m := range members {
			consider(uid, m.Name(), m.Avatar())
		}
	}
	if s.nearby != nil {
		// People announced on the local network (issue 11), after room
		// members so a profile a room knows wins over an announcement.
		for _, p := range s.nearby.NearbyPeople() {
			consider(p.UserID, p.DisplayName, "")
		}
	}
	sort.Slice(results, func(i, j int) bool { return results[i].UserID < results[j].UserID })
	limited := len(results) > req.Limit
	if limited {
		results = results[:req.Limit]
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"results": results, "limited": limited})
	return nil
}
