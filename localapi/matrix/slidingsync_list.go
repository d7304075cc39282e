package matrix

import (
	"context"
	"encoding/json"
	"slices"
	"sort"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/push"
)

// sortSlidingEntries orders the room list by activity (MSC4186 §"Activity
// ordering"): bump stamp, newest first; ties by the newest event of any
// kind, then by room ID, so the order is stable between requests.
func sortSlidingEntries(entries []room.SlidingEntry) {
	sort.Slice(entries, func(i, j int) bool {
		a, b := &entries[i], &entries[j]
		if a.BumpStamp != b.BumpStamp {
			return a.BumpStamp > b.BumpStamp
		}
		if a.LastPos != b.LastPos {
			return a.LastPos > b.LastPos
		}
		return a.RoomID < b.RoomID
	})
}

// directRooms is the set of rooms named in the user's m.direct account
// data (Client-Server API §"Direct Messaging"), which is_dm reads.
func (s *Server) directRooms(c *caller) map[string]bool {
	out := map[string]bool{}
	raw, err := s.accounts.AccountData(c.Localpart, "", "m.direct")
	if err != nil || raw == nil {
		return out
	}
	var direct map[string][]string
	if json.Unmarshal(raw, &direct) != nil {
		return out
	}
	for _, rooms := range direct {
		for _, id := range rooms {
			out[id] = true
		}
	}
	return out
}

// slidingFilter returns the test a list's filters make (MSC4186
// §"SlidingRoomFilter"); all given filters must hold.
func (s *Server) slidingFilter(c *caller, f *slidingFilters, dms map[string]bool) (func(*room.SlidingEntry) bool, error) {
	if f == nil {
		return func(*room.SlidingEntry) bool { return true }, nil
	}
	invite := f.IsInvite
	if invite == nil {
		invite = f.IsInvited
	}
	var children map[string]bool
	if f.Spaces != nil {
		children = s.spaceChildren(c, f.Spaces)
	}
	var tagged func(roomID string) bool
	if len(f.Tags) > 0 || len(f.NotTags) > 0 {
		tagged = func(roomID string) bool { return s.tagsMatch(c, roomID, f.Tags, f.NotTags) }
	}
	return func(en *room.SlidingEntry) bool {
		if f.IsDM != nil && dms[en.RoomID] != *f.IsDM {
			return false
		}
		if f.IsEncrypted != nil && en.Encrypted != *f.IsEncrypted {
			return false
		}
		if invite != nil && (en.Membership == "invite") != *invite {
			return false
		}
		if f.RoomTypes != nil && !typeListed(en, f.RoomTypes) {
			return false
		}
		if typeListed(en, f.NotRoomTypes) {
			return false
		}
		if children != nil && !children[en.RoomID] {
			return false
		}
		if tagged != nil && !tagged(en.RoomID) {
			return false
		}
		return true
	}, nil
}

// typeListed says whether the room's type is in types, where null stands
// for rooms without a type.
func typeListed(en *room.SlidingEntry, types []*string) bool {
	for _, t := range types {
		if (t == nil && !en.HasType) || (t != nil && en.HasType && *t == en.RoomType) {
			return true
		}
	}
	return false
}

// spaceChildren are the rooms named by m.space.child events (with a via)
// of the given spaces the user is joined to; subspaces are not followed
// (MSC4186: "Servers MUST NOT navigate subspaces").
func (s *Server) spaceChildren(c *caller, spaces []string) map[string]bool {
	out := map[string]bool{}
	joined, _ := s.rooms.JoinedRooms(c.UserID)
	for _, space := range spaces {
		if !slices.Contains(joined, space) {
			continue
		}
		state, err := s.rooms.State(c.UserID, space)
		if err != nil {
			continue
		}
		for _, ev := range state {
			if ev.Type != "m.space.child" || ev.StateKey == nil {
				continue
			}
			var content struct {
				Via []string `json:"via"`
			}
			if json.Unmarshal(ev.Content, &content) == nil && len(content.Via) > 0 {
				out[*ev.StateKey] = true
			}
		}
	}
	return out
}

// tagsMatch applies the tags and not_tags filters to a room's m.tag room
// account data; not_tags wins.
func (s *Server) tagsMatch(c *caller, roomID string, tags, notTags []string) bool {
	var content struct {
		Tags map[string]json.RawMessage `json:"tags"`
	}
	if raw, err := s.accounts.AccountData(c.Localpart, roomID, "m.tag"); err == nil && raw != nil {
		json.Unmarshal(raw, &content)
	}
	for _, t := range notTags {
		if _, ok := content.Tags[t]; ok {
			return false
		}
	}
	if len(tags) == 0 {
		return true
	}
	for _, t := range tags {
		if _, ok := content.Tags[t]; ok {
			return true
		}
	}
	return false
}

// slidingUnread sets a joined room's notification and highlight counts,
// as /sync's unread_notifications (sync_unread.go) counts them. live is
// shared by the rooms of one response.
func (s *Server) slidingUnread(ctx context.Context, c *caller, roomID string, now uint64, live **push.Live, out *slidingRoomResp) error {
	n, h := 0, 0
	if s.push != nil {
		if *live == nil {
			l, err := s.push.Live(ctx, c.UserID, now)
			if err != nil {
				return err
			}
			*live = l
		}
		counts, err := s.push.Counts(c.UserID, roomID, *live)
		if err != nil {
			return err
		}
		n, h = counts.All.Notifications, counts.All.Highlights
	}
	out.NotificationCount, out.HighlightCount = &n, &h
	return nil
}
