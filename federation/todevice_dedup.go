package federation

import "sync"

// seenMessageIDs remembers the message_id of the last m.direct_to_device
// EDUs delivered, by sender, so an EDU sent again in a later transaction
// (its server never heard our 200 and queued it anew) is not delivered
// twice: message_id is there "for idempotence" (Server-Server API
// §"Send-to-device messaging"). Transaction IDs cover only a /send
// retried as it was. The memory is bounded, oldest forgotten first, and
// does not outlive the process: a copy arriving after many others, or
// after a restart, is delivered again, as it would be without the ID.
type seenMessageIDs struct {
	mu   sync.Mutex
	keys map[string]bool // each key in ring: true once delivered or being delivered
	ring []string        // keys in the order they were first claimed
	next int             // where the next key goes in ring once it is full
}

// maxSeenMessageIDs bounds seenMessageIDs: a few hundred KiB, with IDs
// of at most maxMessageIDRunes code points (Server-Server API
// §"m.direct_to_device").
const (
	maxSeenMessageIDs = 8192
	maxMessageIDRunes = 32
)

// claim reports whether sender's messageID is new, and if so records it.
// The caller delivers the EDU and releases the claim if that fails, so a
// retry after a failure is not taken for a copy.
func (s *seenMessageIDs) claim(sender, messageID string) bool {
	k := sender + "\x00" + messageID
	s.mu.Lock()
	defer s.mu.Unlock()
	claimed, inRing := s.keys[k]
	if claimed {
		return false
	}
	if s.keys == nil {
		s.keys = map[string]bool{}
	}
	if inRing { // released after a failure: its slot is still there
		s.keys[k] = true
		return true
	}
	if len(s.ring) < maxSeenMessageIDs {
		s.ring = append(s.ring, k)
	} else {
		delete(s.keys, s.ring[s.next])
		s.ring[s.next] = k
		s.next = (s.next + 1) % maxSeenMessageIDs
	}
	s.keys[k] = true
	return true
}

// release forgets a claim whose delivery failed; the key keeps its slot
// in the ring, so a later claim does not take a second one.
func (s *seenMessageIDs) release(sender, messageID string) {
	k := sender + "\x00" + messageID
	s.mu.Lock()
	if _, ok := s.keys[k]; ok {
		s.keys[k] = false
	}
	s.mu.Unlock()
}
