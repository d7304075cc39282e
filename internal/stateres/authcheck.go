package stateres

import (
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// iterativeAuthChecks applies events in order to state, each one only if the
// authorization rules allow it against state (§"Iterative auth checks"). A
// key the rules need that state lacks is taken from the event's own
// auth_events, unless that auth event was rejected. With v2.1's empty start
// this is how the create event (implied in v12 auth_events) and the senders'
// memberships come in; in v2 it fills in the conflicted keys not yet
// replayed. It is always the auth event that is added, never ev itself
// (gomatrixserverlib's v2 adds ev, which lets ev authorise itself).
//
// Events in the list are re-checked whether or not they were rejected
// before (§"Rejected events": they are handled as usual); only rejected auth
// events are skipped.
func (r *resolver) iterativeAuthChecks(state map[stateKey]gomatrixserverlib.PDU, events []gomatrixserverlib.PDU) {
	for _, ev := range events {
		if r.allowed(ev, state) {
			state[keyOf(ev)] = ev
		}
	}
}

func (r *resolver) allowed(ev gomatrixserverlib.PDU, state map[stateKey]gomatrixserverlib.PDU) (ok bool) {
	// Allowed and the provider parse content and room IDs, and panic on
	// some malformed input: such an event is simply not allowed.
	defer func() {
		if rec := recover(); rec != nil {
			ok = false
		}
	}()
	provider, err := gomatrixserverlib.NewAuthEvents(nil)
	if err != nil {
		return false
	}
	for _, t := range gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{ev}).Tuples() {
		k := stateKey{t.EventType, t.StateKey}
		p, ok := state[k]
		if !ok {
			if r.fallback != nil {
				p = r.fallback(ev, k)
			} else {
				p = r.fromAuthEvents(ev.EventID(), k)
			}
		}
		if p != nil {
			if err := provider.AddEvent(p); err != nil {
				return false
			}
		}
	}
	return gomatrixserverlib.Allowed(ev, provider, userIDForSender) == nil
}

// fromAuthEvents is the event for key k among id's auth events, if it is
// known and was not rejected.
func (r *resolver) fromAuthEvents(id string, k stateKey) gomatrixserverlib.PDU {
	for _, a := range r.authIDs[id] {
		p, ok := r.events[a]
		if !ok || p.Type() != k.typ || !p.StateKeyEquals(k.key) || r.isRej(a) {
			continue
		}
		return p
	}
	return nil
}

// userIDForSender maps a sender to its user ID: outside pseudo-ID rooms
// (MSC4014) the sender is the user ID. It never returns (nil, nil), which
// would make gomatrixserverlib skip checks.
func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	u, err := spec.NewUserID(string(s), true)
	if err != nil {
		return nil, fmt.Errorf("stateres: sender %q: %w", s, err)
	}
	return u, nil
}
