package matrix

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// Room summaries (Client-Server API GET /room_summary/{roomIdOrAlias},
// spec v1.15, MSC3266): a room's name, topic, avatar, join rule, member
// count and the like, for a room preview before joining. The summary is
// the one the space hierarchy uses (room.Engine.SpaceSummary) when a
// local user is in the room; for a caller invited or knocking, the
// stripped state that came with it (room.Engine.InviteSummary: MSC3266
// allows partial answers there); otherwise what the via servers answer to
// the federation hierarchy request, as MSC3266 reuses it.
//
// Who sees what: an authenticated user sees a room they have any
// membership in but leave (the spec's membership enum names invite, knock
// and ban too), and otherwise what GET /hierarchy would show them
// (room.Engine.SpaceAccessible: public, knockable or world-readable
// rooms, restricted rooms they may join). A caller without an access
// token, which the spec lets servers allow, sees only rooms with a
// public, knock or knock_restricted join rule or world-readable history,
// and gets no membership. Everything else is 404 M_NOT_FOUND, the answer
// for a room that does not exist, so the endpoint never tells which
// private rooms exist.

func (s *Server) roomSummaryRoutes() {
	h := s.optionallyAuthed(s.roomSummary)
	s.mux.HandleFunc("GET /_matrix/client/v1/room_summary/{roomIdOrAlias}", h)
	// MSC3266's unstable paths: the one the MSC settled on, and the one
	// under /rooms that ruma (matrix-rust-sdk, so Element X) still calls.
	s.mux.HandleFunc("GET /_matrix/client/unstable/im.nheko.summary/summary/{roomIdOrAlias}", h)
	s.mux.HandleFunc("GET /_matrix/client/unstable/im.nheko.summary/rooms/{roomIdOrAlias}/summary", h)
}

// Anonymous callers may make the server ask other servers at most
// summaryAnonBurst times, then once per summaryAnonLeak, per client
// address (MSC3266: "rate limit how often they fetch information over
// federation more heavily, if the user is unauthenticated").
const (
	summaryAnonBurst = 10
	summaryAnonLeak  = 3 * time.Second
	summaryMaxVia    = 10
)

// summaryLimits holds the per-address budget of anonymous federation
// lookups. The zero value is ready to use.
type summaryLimits struct {
	mu sync.Mutex
	l  *limiter
}

// take spends one lookup of addr's budget, or says how long to wait.
func (sl *summaryLimits) take(addr string) time.Duration {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.l == nil {
		sl.l = newLimiter(summaryAnonBurst, summaryAnonLeak, maxLimiterKeys)
	}
	now := time.Now()
	if wait := sl.l.wait(addr, now); wait > 0 {
		return wait
	}
	sl.l.add(addr, 1, now)
	return 0
}

// optionallyAuthed calls h with the caller when the request carries an
// access token (a wrong one is refused as anywhere else) and with nil
// when it carries none.
func (s *Server) optionallyAuthed(h authedHandler) http.HandlerFunc {
	withToken := s.withCaller(h)
	return public(func(w http.ResponseWriter, r *http.Request) error {
		if !s.hasToken(r) {
			return h(w, r, nil)
		}
		return withToken(w, r)
	})
}

// roomSummaryResponse is room_summary.yaml's response: the public-room
// fields, the MSC3266 additions, and their unstable names on the unstable
// paths (mautrix and older Synapse read those).
type roomSummaryResponse struct {
	room.PublicRoom
	AllowedRoomIDs []string `json:"allowed_room_ids,omitempty"`
	Encryption     string   `json:"encryption,omitempty"`
	RoomVersion    string   `json:"room_version,omitempty"`
	Membership     string   `json:"membership,omitempty"`

	UnstableEncryption     string `json:"im.nheko.summary.encryption,omitempty"`
	UnstableRoomVersion    string `json:"im.nheko.summary.room_version,omitempty"`
	UnstableRoomVersionOld string `json:"im.nheko.summary.version,omitempty"`
}

var errSummaryNotFound = matrixerr.NotFound("room not found")

func (s *Server) roomSummary(w http.ResponseWriter, r *http.Request, c *caller) error {
	target := r.PathValue("roomIdOrAlias")
	if len(target) > 255 || !(strings.HasPrefix(target, "!") || strings.HasPrefix(target, "#")) {
		return matrixerr.InvalidParam("expected a room ID or a room alias")
	}
	// An alias on another server is itself a federation request.
	if c == nil && strings.HasPrefix(target, "#") && serverOf(target) != s.accounts.ServerName() && s.fed != nil {
		if err := s.anonLookup(r); err != nil {
			return err
		}
	}
	roomID, via, err := s.roomAndServers(r, target)
	if err != nil {
		var me *matrixerr.Error
		if errors.As(err, &me) && me.Status == http.StatusBadRequest {
			return err
		}
		// An alias nobody knows, or whose server cannot be reached.
		return errSummaryNotFound
	}
	membership := ""
	if c != nil {
		membership = s.rooms.RoomMembership(c.UserID, roomID)
		if membership == "" {
			membership = "leave" // required when authenticated
		}
	}
	sr, err := s.summarise(r, c, roomID, via)
	if err != nil {
		return err
	}
	if !s.summaryVisible(c, membership, sr) {
		return errSummaryNotFound
	}
	res := roomSummaryResponse{PublicRoom: sr.PublicRoom, AllowedRoomIDs: sr.AllowedRoomIDs,
		Encryption: sr.Encryption, RoomVersion: sr.RoomVersion, Membership: membership}
	if strings.Contains(r.URL.Path, "/unstable/") {
		res.UnstableEncryption, res.UnstableRoomVersion, res.UnstableRoomVersionOld = sr.Encryption, sr.RoomVersion, sr.RoomVersion
	}
	matrixerr.WriteJSON(w, http.StatusOK, res)
	return nil
}

// summarise describes the room from local state when a local user is in
// it; else, to a user invited or knocking, from the state that came with
// the invite or knock, which is what their /sync shows them and needs no
// other server (the room's servers refuse to describe a private room to
// this one); else it asks the via servers over federation.
func (s *Server) summarise(r *http.Request, c *caller, roomID string, via []string) (*room.SpaceRoom, error) {
	sr, err := s.rooms.SpaceSummary(roomID, true)
	if err != nil {
		return nil, err
	}
	if sr != nil {
		return sr, nil
	}
	if c != nil {
		if sr, err := s.rooms.InviteSummary(c.UserID, roomID); err != nil || sr != nil {
			return sr, err
		}
	}
	if s.fed == nil || len(via) == 0 {
		return nil, errSummaryNotFound
	}
	// Each via server is a federation request, one after the other: a
	// client's list is cut where a real one (a matrix.to link's, say)
	// would end.
	via = via[:min(len(via), summaryMaxVia)]
	if c == nil {
		if err := s.anonLookup(r); err != nil {
			return nil, err
		}
	}
	h, err := s.fed.Hierarchy(r.Context(), roomID, via, true)
	if err != nil || h.Room == nil {
		// Unknown there, not open to this server, or unreachable: all
		// look the same to the client.
		return nil, errSummaryNotFound
	}
	return h.Room, nil
}

// anonLookup spends one of the client address's anonymous federation
// lookups, or refuses with M_LIMIT_EXCEEDED.
func (s *Server) anonLookup(r *http.Request) error {
	if wait := s.summaryLimits.take(clientAddr(r)); wait > 0 {
		return matrixerr.LimitExceeded(wait.Milliseconds())
	}
	return nil
}

// summaryVisible applies the rules in the comment at the top of the file.
func (s *Server) summaryVisible(c *caller, membership string, sr *room.SpaceRoom) bool {
	if c == nil {
		switch sr.JoinRule {
		case "public", "knock", "knock_restricted":
			return true
		}
		return sr.WorldReadable
	}
	switch membership {
	case "join", "invite", "knock", "ban":
		return true
	}
	return s.rooms.SpaceAccessible(c.UserID, sr)
}

// hasToken reports whether r carries an access token (valid or not).
func (s *Server) hasToken(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.URL.Query().Has("access_token")
}
