package matrix

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

func (s *Server) hierarchyRoutes() {
	s.mux.HandleFunc("GET /_matrix/client/v1/rooms/{roomId}/hierarchy", s.authed(s.spaceHierarchy))
}

// Limits of GET /hierarchy: the spec leaves defaults and maximums to the
// server.
const (
	hierarchyDefaultLimit = 50
	hierarchyMaxLimit     = 100
	hierarchyMaxDepth     = 50
	hierarchyPageTTL      = 10 * time.Minute
	// hierarchyMaxWalks bounds the walks kept between pages: each holds
	// a stack and the summaries other servers sent, and a client may
	// start walks it never finishes.
	hierarchyMaxWalks = 256
)

// hierarchyWalk is the state of one paginated walk: the rooms still to
// visit (a stack, so the walk is depth-first as the spec asks), those
// already visited (spaces may link in cycles), and the summaries other
// servers gave for children, so each remote space is asked once.
type hierarchyWalk struct {
	user, root    string
	suggestedOnly bool
	maxDepth      int
	stack         []hierarchyEntry
	seen          map[string]bool
	remote        map[string]*room.SpaceRoom
	denied        map[string]bool // children their server called inaccessible
	expires       time.Time
	seq           uint64 // order of put, to evict the oldest
}

type hierarchyEntry struct {
	roomID string
	via    []string
	depth  int
}

// hierarchyPages holds walks between pages, in memory: a token is worth
// minutes and nothing after a restart. The zero value is ready to use.
type hierarchyPages struct {
	mu    sync.Mutex
	walks map[string]*hierarchyWalk
	seq   uint64
}

func (p *hierarchyPages) put(w *hierarchyWalk) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.walks == nil {
		p.walks = map[string]*hierarchyWalk{}
	}
	oldest := ""
	for k, old := range p.walks {
		if now.After(old.expires) {
			delete(p.walks, k)
		} else if oldest == "" || old.seq < p.walks[oldest].seq {
			oldest = k
		}
	}
	if len(p.walks) >= hierarchyMaxWalks {
		delete(p.walks, oldest) // its client has to start over
	}
	token := account.RandomString(16)
	p.seq++
	w.expires, w.seq = now.Add(hierarchyPageTTL), p.seq
	p.walks[token] = w
	return token
}

// take hands out the walk a token continues, if ok accepts it; a
// refused token stays valid, so a client can retry with the right
// parameters.
func (p *hierarchyPages) take(token string, ok func(*hierarchyWalk) error) (*hierarchyWalk, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.walks[token]
	if w == nil || time.Now().After(w.expires) {
		return nil, matrixerr.InvalidParam("unknown or expired from token")
	}
	if err := ok(w); err != nil {
		return nil, err
	}
	delete(p.walks, token)
	return w, nil
}

// spaceHierarchy implements GET /rooms/{roomId}/hierarchy (Client-Server
// API §"Spaces"): a depth-first walk of m.space.child links from the
// root, children in the spec's order, listing every room the user may
// see (room.Engine.SpaceAccessible). Rooms no local user is in are asked
// of the servers their parent's m.space.child names, through federation;
// that answer also describes the children the remote server knows. A
// room nobody can describe, or the user may not see, is left out with
// its children; the root itself must be visible (else 403).
func (s *Server) spaceHierarchy(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	root := r.PathValue("roomId")
	suggestedOnly := q.Get("suggested_only") == "true"
	limit, err := queryInt(q, "limit", hierarchyDefaultLimit)
	if err == nil && limit < 1 {
		err = matrixerr.InvalidParam("limit must be at least 1")
	}
	if err != nil {
		return err
	}
	limit = min(limit, hierarchyMaxLimit)
	maxDepth, err := queryInt(q, "max_depth", hierarchyMaxDepth)
	if err != nil {
		return err
	}
	maxDepth = min(maxDepth, hierarchyMaxDepth)

	var walk *hierarchyWalk
	if from := q.Get("from"); from != "" {
		walk, err = s.spaces.take(from, func(walk *hierarchyWalk) error {
			if walk.user != c.UserID || walk.root != root {
				return matrixerr.InvalidParam("unknown or expired from token")
			}
			if walk.suggestedOnly != suggestedOnly || (q.Has("max_depth") && walk.maxDepth != maxDepth) {
				return matrixerr.InvalidParam("suggested_only and max_depth cannot change while paginating")
			}
			return nil
		})
		if err != nil {
			return err
		}
	} else {
		walk = &hierarchyWalk{user: c.UserID, root: root, suggestedOnly: suggestedOnly, maxDepth: maxDepth,
			stack: []hierarchyEntry{{roomID: root, via: []string{serverOf(root)}}},
			seen:  map[string]bool{}, remote: map[string]*room.SpaceRoom{}, denied: map[string]bool{}}
	}

	rooms := []*room.SpaceRoom{}
	for len(walk.stack) > 0 && len(rooms) < limit {
		e := walk.stack[len(walk.stack)-1]
		walk.stack = walk.stack[:len(walk.stack)-1]
		if walk.seen[e.roomID] {
			continue
		}
		walk.seen[e.roomID] = true
		sr := s.describeRoom(r.Context(), walk, e)
		if sr == nil || !s.rooms.SpaceAccessible(c.UserID, sr) {
			if e.roomID == root {
				return matrixerr.Forbidden("you may not view this space")
			}
			continue
		}
		out := *sr
		if e.depth >= walk.maxDepth || out.RoomType != "m.space" {
			// Past max_depth the walk stops; and only a space has
			// children, whatever another server may say.
			out.ChildrenState = []room.SpaceChild{}
		}
		rooms = append(rooms, &out)
		for i := len(out.ChildrenState) - 1; i >= 0; i-- {
			ch := out.ChildrenState[i]
			if !walk.seen[ch.StateKey] {
				walk.stack = append(walk.stack, hierarchyEntry{roomID: ch.StateKey, via: ch.Via(), depth: e.depth + 1})
			}
		}
	}
	res := map[string]any{"rooms": rooms}
	if slices.ContainsFunc(walk.stack, func(e hierarchyEntry) bool { return !walk.seen[e.roomID] }) {
		res["next_batch"] = s.spaces.put(walk)
	}
	matrixerr.WriteJSON(w, http.StatusOK, res)
	return nil
}

// describeRoom summarises a room: from local state if a local user is in
// it, else from what a remote server said about it as a child, else by
// asking the via servers (which also describes its children).
func (s *Server) describeRoom(ctx context.Context, walk *hierarchyWalk, e hierarchyEntry) *room.SpaceRoom {
	if sr, err := s.rooms.SpaceSummary(e.roomID, walk.suggestedOnly); err == nil && sr != nil {
		return sr
	}
	// A remote child's own children are only known by asking about it, so
	// a cached child summary serves only where the walk stops anyway.
	if walk.denied[e.roomID] {
		return nil
	}
	if sr := walk.remote[e.roomID]; sr != nil && (sr.RoomType != "m.space" || e.depth >= walk.maxDepth) {
		return sr
	}
	if s.fed == nil {
		return nil
	}
	h, err := s.fed.Hierarchy(ctx, e.roomID, e.via, walk.suggestedOnly)
	if err != nil {
		return walk.remote[e.roomID]
	}
	for _, ch := range h.Children {
		if ch != nil && ch.RoomID != "" {
			if ch.ChildrenState == nil {
				ch.ChildrenState = []room.SpaceChild{}
			}
			walk.remote[ch.RoomID] = ch
		}
	}
	for _, id := range h.InaccessibleChildren {
		// The child's server will not show it to this server.
		walk.denied[id] = true
	}
	return h.Room
}
