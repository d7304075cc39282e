package push

import (
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// Calls ringing for the owner (issue 12: "an incoming call to the owner
// makes a desktop notification and shows in the tray"). A call rings from
// its m.call.invite (Client-Server API §"Voice over IP") until an
// m.call.answer, m.call.hangup or m.call.reject with the same call_id in
// the same room, or until the invite's lifetime has passed ("once the
// invite age exceeds this value, clients should discard it"). The set is
// filled by the evaluator as it follows the stream and read by the control
// API's status; it has no timer of its own: an expired call is dropped
// when the set is next read or written.
//
// The server sees calls only in rooms without encryption: in an encrypted
// room the invite is an m.room.encrypted event, and only the owner's
// client, which can decrypt it, rings.

const (
	// maxRinging bounds the set: a room flooding invites cannot grow it.
	// Past it the call that rang first goes.
	maxRinging = 8
	// defaultRingLifetime is used for an invite without a usable lifetime
	// (the field is required; clients send 60 s). maxRingLifetime caps
	// what an invite may ask for, so a hostile one cannot ring for days.
	defaultRingLifetime = time.Minute
	maxRingLifetime     = 10 * time.Minute
)

// RingingCall is a call ringing for the owner.
type RingingCall struct {
	RoomID, CallID string
	// Caller is the inviter's user ID, CallerName their display name in
	// the room (empty when they have none).
	Caller, CallerName string
	// Until is when the invite's lifetime runs out.
	Until time.Time
}

// ringing is the bounded set of calls ringing for the owner, oldest first.
type ringing struct {
	mu    sync.Mutex
	calls []RingingCall
}

// callContent is what ringing reads of a call event's content.
type callContent struct {
	CallID   string `json:"call_id"`
	Lifetime int64  `json:"lifetime"`
	Invitee  string `json:"invitee"`
}

// parseCall reads a call event's content; a field of the wrong type is
// left zero (json.Unmarshal fills the others), ok is false when there is
// no call_id.
func parseCall(content json.RawMessage) (c callContent, ok bool) {
	_ = json.Unmarshal(content, &c)
	return c, c.CallID != ""
}

// ringUntil is when an invite sent at originTS (ms) with lifetime (ms)
// stops ringing. A sender's clock ahead of ours counts from now, so no
// invite rings longer than maxRingLifetime from when we see it.
func ringUntil(originTS, lifetime int64, now time.Time) time.Time {
	life := defaultRingLifetime
	switch {
	case lifetime > maxRingLifetime.Milliseconds():
		life = maxRingLifetime
	case lifetime > 0:
		life = time.Duration(lifetime) * time.Millisecond
	}
	sent := time.UnixMilli(originTS)
	if sent.After(now) {
		sent = now
	}
	return sent.Add(life)
}

// track updates the set from one batch of evaluated events, in stream
// order: an invite for which the push rules notify the owner starts a
// call unless its lifetime has passed, it names someone else as invitee
// or the owner sent it; an answer, hangup or reject ends it, whoever sent
// it (in a room of several, another member answering takes the call).
func (rg *ringing) track(batch []evaluated, owner func(string) bool, now time.Time) {
	if owner == nil {
		return
	}
	rg.mu.Lock()
	defer rg.mu.Unlock()
	rg.expire(now)
	for _, e := range batch {
		ev := &e.pe.Event
		switch ev.Type {
		case "m.call.invite":
			c, ok := parseCall(ev.Content)
			if !ok || owner(ev.Sender) || !notifiesOwner(e.results, owner, c.Invitee) {
				continue
			}
			until := ringUntil(ev.OriginServerTS, c.Lifetime, now)
			if !until.After(now) {
				continue // backfill or a late delivery: the caller gave up
			}
			rg.end(e.pe.RoomID, c.CallID)
			if len(rg.calls) == maxRinging {
				rg.calls = slices.Delete(rg.calls, 0, 1)
			}
			rg.calls = append(rg.calls, RingingCall{RoomID: e.pe.RoomID, CallID: c.CallID,
				Caller: ev.Sender, CallerName: e.pe.SenderName, Until: until})
		case "m.call.answer", "m.call.hangup", "m.call.reject":
			if c, ok := parseCall(ev.Content); ok {
				rg.end(e.pe.RoomID, c.CallID)
			}
		}
	}
}

// notifiesOwner reports whether the results notify an owner who is the
// invitee (or anyone may answer).
func notifiesOwner(results []Result, owner func(string) bool, invitee string) bool {
	for _, r := range results {
		if r.Notify && owner(r.UserID) && (invitee == "" || invitee == r.UserID) {
			return true
		}
	}
	return false
}

func (rg *ringing) end(roomID, callID string) {
	rg.calls = slices.DeleteFunc(rg.calls, func(c RingingCall) bool { return c.RoomID == roomID && c.CallID == callID })
}

func (rg *ringing) expire(now time.Time) {
	rg.calls = slices.DeleteFunc(rg.calls, func(c RingingCall) bool { return !c.Until.After(now) })
}

// has reports whether the call rings now.
func (rg *ringing) has(roomID, callID string, now time.Time) bool {
	rg.mu.Lock()
	defer rg.mu.Unlock()
	rg.expire(now)
	return slices.ContainsFunc(rg.calls, func(c RingingCall) bool { return c.RoomID == roomID && c.CallID == callID })
}

// list is the calls ringing now, oldest first.
func (rg *ringing) list(now time.Time) []RingingCall {
	rg.mu.Lock()
	defer rg.mu.Unlock()
	rg.expire(now)
	return slices.Clone(rg.calls)
}

// Ringing lists the calls ringing for the owner now (the control API's
// status; the tray shows them), oldest first.
func (s *Service) Ringing() []RingingCall {
	return s.ringing.list(s.clock())
}

// clock is s.now, or time.Now for a Service not made by New.
func (s *Service) clock() time.Time {
	if s.now == nil {
		return time.Now()
	}
	return s.now()
}
