package search

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// Query is one room_events search (Client-Server API §"Server Side Search").
type Query struct {
	UserID, Device string
	Term           string
	Fields         byte // FieldBody|FieldName|FieldTopic; 0 means all
	Recent         bool // order_by recent; rank otherwise
	Limit          int
	Token          string // next_batch of a previous page

	Rooms, NotRooms     []string
	Senders, NotSenders []string
	Types, NotTypes     []string

	// Context asks for event_context with these limits.
	Context                 bool
	BeforeLimit, AfterLimit int
	IncludeProfile          bool
}

// Hit is one result.
type Hit struct {
	Rank    float64
	Event   room.ClientEvent
	RoomID  string
	Context *Context
}

// Context is a hit's event_context.
type Context struct {
	Before, After []room.ClientEvent
	Start, End    uint64
	Profiles      map[string]Profile
}

// Profile is a sender's historic profile.
type Profile struct {
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// Results are one page.
type Results struct {
	Count      int
	Highlights []string
	Hits       []Hit
	NextBatch  string // set on every full page; empty on a short one
}

// candidate is an event that matched every term so far.
type candidate struct {
	nid, roomNID uint64
	score        float64
}

// maxLimit caps a page; the spec leaves it to the server.
const maxLimit = 100

// Search runs q for its user. Terms are ANDed; the last term also matches
// as a prefix (for search-as-you-type), at half weight. Ranking is BM25
// with fixed corpus constants, so a hit's score depends only on the
// postings up to the first page's position: later pages stay consistent
// with the first (no duplicates, no gaps) while new messages arrive.
func (ix *Index) Search(q Query) (*Results, error) {
	terms := dedupe(tokenize(q.Term))
	res := &Results{Hits: []Hit{}, Highlights: []string{}}
	limit := q.Limit
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, maxLimit)
	fields := q.Fields
	if fields == 0 {
		fields = AllFields
	}
	cur, err := parseToken(q.Token)
	if err != nil {
		return nil, err
	}
	if len(terms) == 0 {
		return res, nil
	}
	// Messages sent just before the search should be found: let the
	// index catch up with what is committed, but never wait long.
	if pos, _ := ix.waiter.Pos(); cur.upTo == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ix.WaitFor(ctx, pos)
		cancel()
	}
	err = ix.rooms.SearchScope(q.UserID, q.Device, func(tx *store.Tx, s *room.Scope) error {
		if cur.upTo == 0 {
			cur.upTo = store.U64(tx.Get(store.SearchMeta, keyPos))
		}
		allowed := allowedRooms(s.Rooms(), q.Rooms, q.NotRooms)
		if len(allowed) == 0 {
			return nil
		}
		var cands []candidate
		var lastPs []posting // the last term's, for the words it matched
		var words []string
		prefix := false
		for i, t := range terms {
			prefix = i == len(terms)-1 && utf8.RuneCountInString(t) >= 3
			ps, ws := postings(tx, t, prefix, cur.upTo, fields, allowed)
			lastPs, words = ps, ws
			idf := math.Log(1 + corpusDocs/float64(len(ps)+1))
			if i == 0 {
				cands = make([]candidate, len(ps))
				for j, p := range ps {
					cands[j] = candidate{nid: p.nid, roomNID: p.roomNID, score: idf * p.weight}
				}
			} else {
				cands = intersect(cands, ps, idf)
			}
			if len(cands) == 0 {
				return nil
			}
		}
		filtered := cands[:0]
		needDoc := len(q.Senders)+len(q.NotSenders)+len(q.Types)+len(q.NotTypes) > 0
		for _, c := range cands {
			if !s.CanMatch(c.roomNID, c.nid) {
				continue
			}
			if needDoc && !docAllowed(tx, c.nid, q) {
				continue
			}
			filtered = append(filtered, c)
		}
		cands = filtered
		res.Count = len(cands)
		res.Highlights = highlights(terms, prefix, cands, lastPs, words)
		if q.Recent {
			slices.SortFunc(cands, func(a, b candidate) int { return cmpDesc(a.nid, b.nid) })
		} else {
			slices.SortFunc(cands, func(a, b candidate) int {
				if a.score != b.score {
					if a.score > b.score {
						return -1
					}
					return 1
				}
				return cmpDesc(a.nid, b.nid)
			})
		}
		for _, c := range cands {
			if !cur.before(c, q.Recent) {
				continue
			}
			ev, ok := s.Event(c.nid)
			if !ok {
				continue // redacted or gone since it was indexed
			}
			h := Hit{Rank: c.score, Event: *ev, RoomID: s.Rooms()[c.roomNID]}
			if q.Context {
				h.Context = hitContext(s, c, q)
			}
			res.Hits = append(res.Hits, h)
			if len(res.Hits) == limit {
				// A full page always carries next_batch, as Synapse's
				// does and Complement expects: the page after the last
				// result is empty and has none.
				res.NextBatch = cursor{upTo: cur.upTo, score: c.score, nid: c.nid}.String()
				break
			}
		}
		return nil
	})
	return res, err
}

func allowedRooms(mine map[uint64]string, rooms, notRooms []string) map[uint64]bool {
	out := map[uint64]bool{}
	for nid, id := range mine {
		if (len(rooms) > 0 && !slices.Contains(rooms, id)) || slices.Contains(notRooms, id) {
			continue
		}
		out[nid] = true
	}
	return out
}

func docAllowed(tx *store.Tx, nid uint64, q Query) bool {
	d, err := decodeDoc(tx.Get(store.SearchDocs, store.PutU64(nid)))
	if err != nil || d == nil {
		return false
	}
	f := room.EventFilter{Types: q.Types, NotTypes: q.NotTypes, Senders: q.Senders, NotSenders: q.NotSenders}
	return f.Allows(d.typ, d.sender)
}

func hitContext(s *room.Scope, c candidate, q Query) *Context {
	before, after := q.BeforeLimit, q.AfterLimit
	ctx := &Context{}
	ctx.Before, ctx.After, ctx.Start, ctx.End = s.Context(c.roomNID, c.nid, before, after)
	if q.IncludeProfile {
		ctx.Profiles = map[string]Profile{}
		for _, nid := range contextNIDs(c.nid) {
			if u, name, avatar, ok := s.Profile(nid); ok {
				ctx.Profiles[u] = Profile{DisplayName: name, AvatarURL: avatar}
			}
		}
	}
	return ctx
}

// contextNIDs are the events whose senders' profiles are reported: the
// spec asks for "the users that sent the events that were returned",
// which is the hit itself for a search.
func contextNIDs(nid uint64) []uint64 { return []uint64{nid} }

func dedupe(terms []string) []string {
	var out []string
	for _, t := range terms {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

func cmpDesc(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// cursor is a next_batch token: the index position the first page saw
// and the sort key of the last hit returned.
type cursor struct {
	upTo  uint64
	score float64
	nid   uint64
}

func (c cursor) String() string {
	return fmt.Sprintf("s%d_%x_%d", c.upTo, math.Float64bits(c.score), c.nid)
}

func parseToken(s string) (cursor, error) {
	if s == "" {
		return cursor{}, nil
	}
	bad := matrixerr.InvalidParam("unknown next_batch token")
	parts := strings.Split(strings.TrimPrefix(s, "s"), "_")
	if !strings.HasPrefix(s, "s") || len(parts) != 3 {
		return cursor{}, bad
	}
	upTo, err1 := strconv.ParseUint(parts[0], 10, 64)
	bits, err2 := strconv.ParseUint(parts[1], 16, 64)
	nid, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || upTo == 0 || nid == 0 {
		return cursor{}, bad
	}
	return cursor{upTo: upTo, score: math.Float64frombits(bits), nid: nid}, nil
}

// before reports whether c sorts after the cursor's last hit, i.e. belongs
// to a later page.
func (cur cursor) before(c candidate, recent bool) bool {
	if cur.nid == 0 {
		return true
	}
	if recent || c.score == cur.score {
		return c.nid < cur.nid
	}
	return c.score < cur.score
}
