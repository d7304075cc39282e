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
func (s *Server) getProfile(w http.ResponseWriter, r *http.Request) {
	if uid := r.PathValue("userId"); s.fed != nil && serverOf(uid) != "" && serverOf(uid) != s.accounts.ServerName() {
		s.remoteProfile(w, r, uid)
		return
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
		matrixerr.Write(w, err)
		return
	}
	if u == nil || lp == "" || u.Deactivated {
		matrixerr.Write(w, matrixerr.NotFound("profile not found"))
		return
	}
	writeProfile(w, r, u.DisplayName, u.AvatarURL)
}

// remoteProfile asks another server for its user's profile
// (Server-Server API §"Querying for information").
func (s *Server) remoteProfile(w http.ResponseWriter, r *http.Request, userID string) {
	field := r.PathValue("field")
	if field != "" && field != "displayname" && field != "avatar_url" {
		matrixerr.Write(w, matrixerr.NotFound("profile field not set"))
		return
	}
	dn, av, err := s.fed.QueryProfile(r.Context(), userID, field)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeProfile(w, r, dn, av)
}

// writeProfile answers GET /profile/{userId} or one {field} of it.
func writeProfile(w http.ResponseWriter, r *http.Request, displayName, avatarURL string) {
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
			matrixerr.Write(w, matrixerr.NotFound("profile field not set"))
			return
		}
		writeJSON(w, map[string]any{field: v})
		return
	}
	writeJSON(w, p)
}

// putProfile serves PUT /profile/{userId}/displayname|avatar_url and
// updates the member event in every joined room, as clients expect.
func (s *Server) putProfile(w http.ResponseWriter, r *http.Request, c *caller) {
	if r.PathValue("userId") != c.UserID {
		matrixerr.Write(w, matrixerr.Forbidden("you may only change your own profile"))
		return
	}
	field := r.PathValue("field")
	if field != "displayname" && field != "avatar_url" {
		matrixerr.Write(w, matrixerr.Forbidden("only displayname and avatar_url can be set"))
		return
	}
	var body map[string]json.RawMessage
	if err := readJSON(r, &body); err != nil {
		matrixerr.Write(w, err)
		return
	}
	var value string
	if raw, ok := body[field]; !ok {
		matrixerr.Write(w, matrixerr.MissingParam(field+" is required"))
		return
	} else if err := json.Unmarshal(raw, &value); err != nil {
		matrixerr.Write(w, matrixerr.BadJSON(field+" must be a string"))
		return
	}
	if len(value) > 256 && field == "displayname" {
		matrixerr.Write(w, matrixerr.InvalidParam("displayname is longer than 256 characters"))
		return
	}
	var dn, av *string
	if field == "displayname" {
		dn = &value
	} else {
		av = &value
	}
	if err := s.accounts.SetProfile(r.Context(), c.Localpart, dn, av); err != nil {
		matrixerr.Write(w, err)
		return
	}
	rooms, _ := s.rooms.JoinedRooms(c.UserID)
	profile := s.profileOf(c)
	for _, id := range rooms {
		// A failure in one room (say, no permission) must not stop the rest.
		s.rooms.ChangeMembership(r.Context(), room.MembershipRequest{Sender: c.UserID, RoomID: id,
			Target: c.UserID, Membership: "join", Profile: profile})
	}
	writeJSON(w, struct{}{})
}

func (s *Server) getAccountData(w http.ResponseWriter, r *http.Request, c *caller) {
	if r.PathValue("userId") != c.UserID {
		matrixerr.Write(w, matrixerr.Forbidden("you may only read your own account data"))
		return
	}
	b, err := s.accounts.AccountData(c.Localpart, r.PathValue("roomId"), r.PathValue("type"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (s *Server) putAccountData(w http.ResponseWriter, r *http.Request, c *caller) {
	if r.PathValue("userId") != c.UserID {
		matrixerr.Write(w, matrixerr.Forbidden("you may only set your own account data"))
		return
	}
	typ, roomID := r.PathValue("type"), r.PathValue("roomId")
	if typ == "m.fully_read" || typ == "m.push_rules" {
		matrixerr.Write(w, matrixerr.BadJSON(typ+" is managed by the server").WithStatus(http.StatusMethodNotAllowed))
		return
	}
	if roomID != "" && !strings.HasPrefix(roomID, "!") {
		matrixerr.Write(w, matrixerr.InvalidParam("invalid room ID"))
		return
	}
	body, err := readBody(r)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	if err := s.accounts.PutAccountData(r.Context(), c.Localpart, roomID, typ, body); err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

// userDirectory implements POST /user_directory/search over local users,
// users who share a room with the searcher and people nearby (nearby.go).
func (s *Server) userDirectory(w http.ResponseWriter, r *http.Request, c *caller) {
	var req struct {
		SearchTerm string `json:"search_term"`
		Limit      int    `json:"limit"`
	}
	if err := readJSON(r, &req); err != nil {
		matrixerr.Write(w, err)
		return
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
		matrixerr.Write(w, err)
		return
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
	writeJSON(w, map[string]any{"results": results, "limited": limited})
}
