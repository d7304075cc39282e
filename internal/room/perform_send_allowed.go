package room

import (
	"strings"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// gomatrixserverlib.Allowed parses the create and power-levels content of
// the auth events on every call; for 32 senders it was about a sixth of
// the engine's CPU per message (BenchmarkSendParallel). For a message event
// (no state key, a type without rules of its own: Client-Server API
// §"Authorization rules", the default rule) its answer depends only on the
// room, the sender, the event type and the auth events it reads — the
// create event, power levels, join rules and the sender's membership —
// never on the content. So a "yes" for one such tuple, named by those
// events' IDs, is the answer for the next message with the same tuple; any
// change of those events (a ban, a leave, new power levels) changes an ID
// and asks gomatrixserverlib again. Refusals are not kept.
type allowedCache struct {
	mu  sync.Mutex
	yes map[string]struct{}
}

// maxAllowed bounds the cache; it is emptied when full.
const maxAllowed = 4096

// authorise runs gomatrixserverlib's auth rules for pdu against provider,
// or takes a "yes" already given for the same question (see above).
func (e *Engine) authorise(pdu gomatrixserverlib.PDU, provider *gomatrixserverlib.AuthEvents) error {
	key, memo := allowedKey(pdu, provider)
	c := &e.allowed
	if memo {
		c.mu.Lock()
		_, yes := c.yes[key]
		c.mu.Unlock()
		if yes {
			return nil
		}
	}
	if err := gomatrixserverlib.Allowed(pdu, provider, userIDForSender); err != nil {
		return err
	}
	if memo {
		c.mu.Lock()
		if c.yes == nil || len(c.yes) >= maxAllowed {
			c.yes = map[string]struct{}{}
		}
		c.yes[key] = struct{}{}
		c.mu.Unlock()
	}
	return nil
}

// allowedKey names what the default rule reads for pdu; memo is false for
// events other rules decide.
func allowedKey(pdu gomatrixserverlib.PDU, provider *gomatrixserverlib.AuthEvents) (key string, memo bool) {
	if pdu.StateKey() != nil || keepsContent[pdu.Type()] {
		return "", false
	}
	id := func(ev gomatrixserverlib.PDU, err error) string {
		if err != nil || ev == nil {
			return ""
		}
		return ev.EventID()
	}
	var b strings.Builder
	for _, s := range []string{
		pdu.RoomID().String(), string(pdu.SenderID()), pdu.Type(),
		id(provider.Create()), id(provider.PowerLevels()), id(provider.JoinRules()),
		id(provider.Member(spec.SenderID(pdu.SenderID()))),
	} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.String(), true
}
