package matrix

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// roomEventFilter is the spec's RoomEventFilter (Client-Server API
// §"Filtering"); the plain EventFilter of account_data and presence is the
// same minus the room fields, so it shares the type.
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

// maxFilterLimit is the most events a filter's limit may ask for (per room
// timeline in /sync); a larger limit is clamped, not refused. Without it a
// limit of 1e9 made each /sync answer every event of every room (issue 10:
// 165 MB per response). 100 is Synapse's default filter_timeline_limit,
// and what /context and /search already allow.
const maxFilterLimit = 100

// engine is the filter as the room engine reads it. The limit is clamped
// here, where it is read, so that filters stored before the clamp existed
// are clamped too.
func (f *roomEventFilter) engine() room.EventFilter {
	if f == nil {
		return room.EventFilter{}
	}
	ef := room.EventFilter{Types: f.Types, NotTypes: f.NotTypes, Senders: f.Senders, NotSenders: f.NotSenders,
		LazyLoadMembers: f.LazyLoadMembers, ContainsURL: f.ContainsURL}
	if f.Limit != nil {
		ef.Limit = min(*f.Limit, maxFilterLimit)
	}
	return ef
}

// filter is the spec's Filter, the body of POST /user/{userId}/filter.
type filter struct {
	// text is the JSON the filter was read from ("" for none): filters
	// with the same text are the same filter, whoever uses them
	// (sync_shared.go).
	text        string
	EventFields []string         `json:"event_fields,omitempty"`
	EventFormat string           `json:"event_format,omitempty"`
	AccountData *roomEventFilter `json:"account_data,omitempty"`
	Presence    *roomEventFilter `json:"presence,omitempty"`
	Room        *struct {
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

// applyRaw keeps the events (JSON with type and sender) the filter admits,
// up to its limit. A nil filter admits everything.
func (f *roomEventFilter) applyRaw(evs []json.RawMessage) []json.RawMessage {
	if f == nil {
		return evs
	}
	ef := f.engine()
	out := []json.RawMessage{}
	for _, ev := range evs {
		var head struct{ Type, Sender string }
		json.Unmarshal(ev, &head)
		if ef.Allows(head.Type, head.Sender) {
			out = append(out, ev)
		}
	}
	if f.Limit != nil && len(out) > *f.Limit {
		out = out[:*f.Limit]
	}
	return out
}

// project keeps only the listed fields of an event (the filter's
// event_fields: dotted paths, with '\.' for a literal dot).
func project(ev any, fields []string) any {
	if len(fields) == 0 {
		return ev
	}
	b, _ := json.Marshal(ev)
	var full map[string]any
	json.Unmarshal(b, &full)
	out := map[string]any{}
	for _, f := range fields {
		path := splitEscaped(f)
		src, dst := full, out
		for i, k := range path {
			v, ok := src[k]
			if !ok {
				break
			}
			if i == len(path)-1 {
				dst[k] = v
				break
			}
			next, ok := v.(map[string]any)
			if !ok {
				break
			}
			if _, ok := dst[k].(map[string]any); !ok {
				dst[k] = map[string]any{}
			}
			src, dst = next, dst[k].(map[string]any)
		}
	}
	return out
}

func splitEscaped(path string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(path); i++ {
		switch {
		case path[i] == '\\' && i+1 < len(path):
			i++
			cur.WriteByte(path[i])
		case path[i] == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(path[i])
		}
	}
	return append(parts, cur.String())
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
	if !strings.HasPrefix(strings.TrimSpace(param), "{") {
		return s.storedFilter(c.Localpart, param) // sync_filter.go
	}
	return s.inlineFilter(param) // sync_filter.go
}

func (s *Server) putFilter(w http.ResponseWriter, r *http.Request, c *caller) error {
	if r.PathValue("userId") != c.UserID {
		return matrixerr.Forbidden("you may only create filters for yourself")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var f filter
	if err := decode(body, &f); err != nil {
		return err
	}
	if err := f.validate(); err != nil {
		return err
	}
	id, err := s.accounts.PutFilter(r.Context(), c.Localpart, body)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"filter_id": id})
	return nil
}

func (s *Server) getFilter(w http.ResponseWriter, r *http.Request, c *caller) error {
	if r.PathValue("userId") != c.UserID {
		return matrixerr.Forbidden("you may only read your own filters")
	}
	f, err := s.accounts.Filter(c.Localpart, r.PathValue("filterId"))
	if err != nil {
		return err
	}
	// The filter is stored as the JSON the client uploaded: written as it
	// is, not decoded and encoded again by matrixerr.WriteJSON.
	w.Header().Set("Content-Type", "application/json")
	w.Write(f)
	return nil
}
