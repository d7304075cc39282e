package matrix

import (
	"encoding/json"
	"slices"

	"github.com/hearth-chat/hearth/push"
)

// syncUnread fills unread_notifications (and unread_thread_notifications)
// of every joined room in a /sync response (Client-Server API §"Receiving
// notifications"). Counts cover exactly the events up to the response's
// position: what the push evaluator has stored, plus the events it has
// not reached yet evaluated here for this user alone, so they never trail
// the timeline and no second wake-up is needed to correct them. Rooms
// with new notifications are added even when nothing else of theirs is in
// the response (e.g. a filter hid the event); it reports whether it added
// any.
//
// The counts, the live hits and the notified rooms are those r read in
// the rooms section's transaction (syncReads).
func (s *Server) syncUnread(c *caller, since, now syncToken, f *filter, resp *syncResponse, r *syncReads) (bool, error) {
	if s.push == nil {
		return false, nil
	}
	if since.pos == 0 {
		if err := s.syncDefaultPushRules(c, f, resp); err != nil {
			return false, err
		}
	}
	news := false
	if since.pos != 0 {
		for _, id := range r.notified {
			if _, ok := resp.Rooms.Join[id]; ok || !s.isJoined(c, id) {
				continue
			}
			if f.Room != nil && ((len(f.Room.Rooms) > 0 && !slices.Contains(f.Room.Rooms, id)) ||
				slices.Contains(f.Room.NotRooms, id)) {
				continue
			}
			resp.Rooms.Join[id] = joinedRoom{Timeline: timeline{Events: []any{}},
				AccountData: eventList{Events: []json.RawMessage{}},
				Ephemeral:   eventList{Events: []json.RawMessage{}}, Summary: map[string]any{}}
			news = true
		}
	}
	for id, jr := range resp.Rooms.Join {
		counts, err := s.unreadCounts(c, id, r)
		if err != nil {
			return false, err
		}
		jr.UnreadNotifications, jr.UnreadThreadNotifications = roomUnread(counts, f.threaded())
		resp.Rooms.Join[id] = jr
	}
	return news, nil
}

// threaded reports whether the filter asks for unread counts per thread
// (MSC3773, unread_thread_notifications).
func (f *filter) threaded() bool {
	return f.Room != nil && f.Room.Timeline != nil && f.Room.Timeline.UnreadThreadNotifs
}

// roomUnread is a joined room's unread_notifications and
// unread_thread_notifications (nil when there is none to report).
func roomUnread(counts push.Counts, threaded bool) (map[string]int, map[string]map[string]int) {
	total := counts.All
	var threads map[string]map[string]int
	if threaded {
		// With threaded counts, the room's own counts are the main
		// timeline's; each thread is reported under its root.
		total = counts.Main
		if len(counts.Threads) > 0 {
			threads = map[string]map[string]int{}
			for root, tc := range counts.Threads {
				threads[root] = map[string]int{"notification_count": tc.Notifications, "highlight_count": tc.Highlights}
			}
		}
	}
	return map[string]int{"notification_count": total.Notifications, "highlight_count": total.Highlights}, threads
}

// syncDefaultPushRules adds the m.push_rules account data to an initial
// sync when the user never changed a rule (the push service writes it on
// every change): clients such as matrix-js-sdk read their rules from it.
func (s *Server) syncDefaultPushRules(c *caller, f *filter, resp *syncResponse) error {
	for _, ev := range resp.AccountData.Events {
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(ev, &head) == nil && head.Type == "m.push_rules" {
			return nil
		}
	}
	g, err := s.push.Rules.Global(c.UserID)
	if err != nil {
		return err
	}
	ev, err := json.Marshal(map[string]any{"type": "m.push_rules", "content": map[string]any{"global": g}})
	if err != nil {
		return err
	}
	resp.AccountData.Events = append(resp.AccountData.Events, f.AccountData.applyRaw([]json.RawMessage{ev})...)
	return nil
}
