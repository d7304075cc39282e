package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/search"
)

// searchIndex is the full-text index POST /search reads.
type searchIndex = *search.Index

// SetSearch gives the API the search index; without one, /search answers
// M_UNRECOGNIZED.
func (s *Server) SetSearch(ix *search.Index) { s.search = ix }

func (s *Server) searchRoutes() {
	s.mux.HandleFunc("POST /_matrix/client/v3/search", s.authed(s.searchEvents))
	s.mux.HandleFunc("GET /_matrix/client/v1/rooms/{roomId}/threads", s.authed(s.threads))
}

// searchRequest is the body of POST /search (search.yaml).
type searchRequest struct {
	SearchCategories *struct {
		RoomEvents *struct {
			SearchTerm   *string          `json:"search_term"`
			Keys         []string         `json:"keys"`
			Filter       *roomEventFilter `json:"filter"`
			OrderBy      string           `json:"order_by"`
			EventContext *struct {
				BeforeLimit    *int `json:"before_limit"`
				AfterLimit     *int `json:"after_limit"`
				IncludeProfile bool `json:"include_profile"`
			} `json:"event_context"`
			IncludeState bool `json:"include_state"`
			Groupings    *struct {
				GroupBy []struct {
					Key string `json:"key"`
				} `json:"group_by"`
			} `json:"groupings"`
		} `json:"room_events"`
	} `json:"search_categories"`
}

// maxContext caps before_limit and after_limit; the spec sets no maximum.
const maxContext = 20

// searchEvents implements POST /_matrix/client/v3/search for the
// room_events category (Client-Server API §"Server Side Search").
func (s *Server) searchEvents(w http.ResponseWriter, r *http.Request, c *caller) error {
	var req searchRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if req.SearchCategories == nil {
		return matrixerr.BadJSON("search_categories is required")
	}
	re := req.SearchCategories.RoomEvents
	if re == nil {
		matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"search_categories": map[string]any{}})
		return nil
	}
	if re.SearchTerm == nil {
		return matrixerr.BadJSON("search_term is required")
	}
	if s.search == nil {
		return matrixerr.Unrecognized("search is not enabled on this server")
	}
	q := search.Query{UserID: c.UserID, Device: c.Session, Term: *re.SearchTerm, Token: r.URL.Query().Get("next_batch")}
	for _, k := range re.Keys {
		switch k {
		case "content.body":
			q.Fields |= search.FieldBody
		case "content.name":
			q.Fields |= search.FieldName
		case "content.topic":
			q.Fields |= search.FieldTopic
		default:
			return matrixerr.InvalidParam("unknown search key " + k)
		}
	}
	switch re.OrderBy {
	case "", "rank":
	case "recent":
		q.Recent = true
	default:
		return matrixerr.InvalidParam("order_by must be recent or rank")
	}
	if f := re.Filter; f != nil {
		if f.Limit != nil {
			if *f.Limit < 0 {
				return matrixerr.InvalidParam("limit must not be negative")
			}
			q.Limit = *f.Limit
		}
		q.Rooms, q.NotRooms, q.Senders, q.NotSenders, q.Types, q.NotTypes = f.Rooms, f.NotRooms, f.Senders, f.NotSenders, f.Types, f.NotTypes
	}
	if ec := re.EventContext; ec != nil {
		q.Context, q.BeforeLimit, q.AfterLimit, q.IncludeProfile = true, 5, 5, ec.IncludeProfile
		for _, l := range []struct {
			v   *int
			dst *int
		}{{ec.BeforeLimit, &q.BeforeLimit}, {ec.AfterLimit, &q.AfterLimit}} {
			if l.v == nil {
				continue
			}
			if *l.v < 0 {
				return matrixerr.InvalidParam("event_context limits must not be negative")
			}
			*l.dst = min(*l.v, maxContext)
		}
	}
	var groupBy []string
	if re.Groupings != nil {
		for _, g := range re.Groupings.GroupBy {
			if g.Key != "room_id" && g.Key != "sender" {
				return matrixerr.InvalidParam("group_by key must be room_id or sender")
			}
			groupBy = append(groupBy, g.Key)
		}
	}
	res, err := s.search.Search(q)
	if err != nil {
		return err
	}
	out := map[string]any{"count": res.Count, "highlights": res.Highlights, "results": searchResults(res, q.Context)}
	if res.NextBatch != "" {
		out["next_batch"] = res.NextBatch
	}
	if re.IncludeState {
		state := map[string]any{}
		for _, h := range res.Hits {
			if _, done := state[h.RoomID]; done {
				continue
			}
			evs, err := s.rooms.State(c.UserID, h.RoomID)
			if err != nil {
				return err
			}
			state[h.RoomID] = evs
		}
		out["state"] = state
	}
	if len(groupBy) > 0 {
		out["groups"] = searchGroups(res, groupBy)
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"search_categories": map[string]any{"room_events": out}})
	return nil
}

func searchResults(res *search.Results, withContext bool) []map[string]any {
	out := make([]map[string]any, 0, len(res.Hits))
	for _, h := range res.Hits {
		item := map[string]any{"rank": h.Rank, "result": h.Event}
		if withContext && h.Context != nil {
			ctx := map[string]any{"events_before": h.Context.Before, "events_after": h.Context.After,
				"start": pageToken(h.Context.Start), "end": pageToken(h.Context.End)}
			if h.Context.Profiles != nil {
				ctx["profile_info"] = h.Context.Profiles
			}
			item["context"] = ctx
		}
		out = append(out, item)
	}
	return out
}

// searchGroups partitions one page's results by room or sender; the order
// of a group is the position of its first result.
func searchGroups(res *search.Results, keys []string) map[string]any {
	out := map[string]any{}
	for _, key := range keys {
		groups := map[string]map[string]any{}
		var order []string
		for _, h := range res.Hits {
			v := h.RoomID
			if key == "sender" {
				v = h.Event.Sender
			}
			g := groups[v]
			if g == nil {
				g = map[string]any{"order": len(order) + 1, "results": []string{}}
				groups[v] = g
				order = append(order, v)
			}
			g["results"] = append(g["results"].([]string), h.Event.EventID)
		}
		out[key] = groups
	}
	return out
}
