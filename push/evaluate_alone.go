package push

import "github.com/hearth-chat/hearth/internal/room"

// nobodyToNotify reports whether pe has no possible recipient: no local
// member but its sender (a sender's own events never notify them,
// Client-Server API §"Push Rules") and not a membership event, which
// may invite a local user (.m.rule.invite_for_me). Evaluate then
// returns at once, without converting the event for mautrix: with 32
// senders each alone in a room that conversion was most of the push
// follower's CPU for nothing (docs/performance.md, "Separate rooms: CPU
// per event").
func nobodyToNotify(pe *room.PushEvent) bool {
	return len(pe.Local) == 0 && pe.Event.Type != "m.room.member"
}
