package matrix

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// roomEventFilter is the spec's RoomEventFilter (Client-Server API
// §"Filtering").
type roomEventFilter struct {
	Limit                   *int     `json:"limit,omitempty"`
	Types                   []string `json:"types,omitempty"`
	NotTypes                []string `json:"not_types,omitempty"`
	Senders                 []string `json:"senders,omitempty"`
	NotSenders              []string `json:"not_senders,omitempty"`
	Rooms                   []string `json:"rooms,omitempty"`
	NotRooms                []string `json:"not_rooms,omitempty"`
	LazyLoadMembers         bool     `json:"lazy_load_members,omitempty"`
	IncludeRedundantMembers bool     `json:"include_redundant_members,omitempty"`
	ContainsURL             *bool    `json:"contains_url,omitempty"`
	UnreadThreadNotifs      bool     `json:"unread_thread_notifications,omitempty"`
}

func (f *roomEventFilter) engine() room.EventFilter {
	if f == nil {
		return room.EventFilter{}
	}
	ef := room.EventFilter{Types: f.Types, NotTypes: f.NotTypes, Senders: f.Senders, NotSenders: f.NotSenders,
		LazyLoadMembers: f.LazyLoadMembers, ContainsURL: f.ContainsURL}
	if f.Limit != nil {
		ef.Limit = *f.Limit
	}
	return ef
}

// filter is the spec's Filter, the body of POST /user/{userId}/filter.
type filter struct {
	EventFields []string `json:"event_fields,omitempty"`
	EventFormat string   `json:"event_format,omitempty"`
	AccountData *struct {
		Types    []string `json:"types,omitempty"`
		NotTypes []string `json:"not_types,omitempty"`
		Limit    *int     `json:"limit,omitempty"`
	} `json:"account_data,omitempty"`
	Presence *struct {
		Types    []string `json:"types,omitempty"`
		NotTypes []string `json:"not_types,omitempty"`
		Limit    *int     `json:"limit,omitempty"`
	} `json:"presence,omitempty"`
	Room *struct {
		Rooms        []string         `json:"rooms,omitempty"`
		NotRooms     []string         `json:"not_rooms,omitempty"`
		IncludeLeave bool             `json:"include_leave,omitempty"`
		Timeline     *roomEventFilter `json:"timeline,omitempty"`
		State        *roomEventFilter `json:"state,omitempty"`
		Ephemeral    *roomEventFilter `json:"ephemeral,omitempty"`
		AccountData  *roomEventFilter `json:"account_data,omitempty"`
	} `json:"room,omitempty"`
}

func (f *filter) validate() error {
	if f.EventFormat != "" && f.EventFormat != "client" && f.EventFormat != "federation" {
		return matrixerr.BadJSON("event_format must be client or federation")
	}
	if f.Room != nil {
		for _, rf := range []*roomEventFilter{f.Room.Timeline, f.Room.State, f.Room.Ephemeral, f.Room.AccountData} {
			if rf != nil && rf.Limit != nil && *rf.Limit < 0 {
				return matrixerr.BadJSON("limit must not be negative")
			}
		}
	}
	return nil
}

// parseRoomEventFilter parses the JSON filter parameter of /messages and
// /context.
func parseRoomEventFilter(s string) (room.EventFilter, error) {
	if s == "" {
		return room.EventFilter{}, nil
	}
	var f roomEventFilter
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		return room.EventFilter{}, matrixerr.BadJSON("filter is not a valid RoomEventFilter")
	}
	return f.engine(), nil
}

// syncFilter resolves the filter parameter of /sync: inline JSON or the ID
// of a stored filter.
func (s *Server) syncFilter(c *caller, param string) (*filter, error) {
	f := &filter{}
	if param == "" {
		return f, nil
	}
	raw := []byte(param)
	if !strings.HasPrefix(strings.TrimSpace(param), "{") {
		stored, err := s.accounts.Filter(c.Localpart, param)
		if err != nil {
			return nil, matrixerr.InvalidParam("unknown filter ID")
		}
		raw = stored
	}
	if err := json.Unmarshal(raw, f); err != nil {
		return nil, matrixerr.BadJSON("filter is not a valid Filter")
	}
	return f, f.validate()
}

func (s *Server) putFilter(w http.ResponseWriter, r *http.Request, c *caller) {
	if r.PathValue("userId") != c.UserID {
		matrixerr.Write(w, matrixerr.Forbidden("you may only create filters for yourself"))
		return
	}
	body, err := readBody(r)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	var f filter
	if err := decode(body, &f); err != nil {
		matrixerr.Write(w, err)
		return
	}
	if err := f.validate(); err != nil {
		matrixerr.Write(w, err)
		return
	}
	id, err := s.accounts.PutFilter(r.Context(), c.Localpart, body)
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	writeJSON(w, map[string]any{"filter_id": id})
}

func (s *Server) getFilter(w http.ResponseWriter, r *http.Request, c *caller) {
	if r.PathValue("userId") != c.UserID {
		matrixerr.Write(w, matrixerr.Forbidden("you may only read your own filters"))
		return
	}
	f, err := s.accounts.Filter(c.Localpart, r.PathValue("filterId"))
	if err != nil {
		matrixerr.Write(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(f)
}
