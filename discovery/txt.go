package discovery

import (
	"slices"
)

// Live TXT changes. What a daemon announces beyond its name and key can
// change while it runs (the people opted in to be found nearby and their
// display names); RFC 6762 §8.4 asks a responder whose records change to
// announce them again, which is what SetTXT does.

// txtState is the announcement's TXT as other goroutines set it; the run
// goroutine copies it into s.me at its next tick.
type txtState struct {
	fixed   []string // Config.TXT, sorted
	dynamic []string // SetTXT's, sorted
	all     []string // the full record
	dirty   bool
}

// SetTXT replaces the TXT strings set by the previous SetTXT (those of
// Config.TXT stay) and, when they changed and this service announces,
// announces again at once (twice, as at start). Sizes are the caller's to
// bound: a record over maxTXTBytes or maxTXTStrings would be refused by
// every receiver.
func (s *Service) SetTXT(extra []string) {
	extra = slices.Clone(extra)
	slices.Sort(extra)
	s.mu.Lock()
	if slices.Equal(extra, s.txt.dynamic) {
		s.mu.Unlock()
		return
	}
	s.txt.dynamic = extra
	s.txt.all = txtRecords(s.cfg.ServerName, s.cfg.KeyID, s.cfg.Key, append(slices.Clone(s.txt.fixed), extra...)...)
	s.txt.dirty = true
	s.mu.Unlock()
	s.poke(func(*pokes) {}) // tick applies it
}

// TXT is the TXT record this service announces (or will at its next
// announcement).
func (s *Service) TXT() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.txt.all)
}

// applyTXT takes a TXT set by SetTXT into the records the run goroutine
// sends, and schedules the announcements.
func (s *Service) applyTXT() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.txt.dirty {
		return false
	}
	s.txt.dirty = false
	s.me.txt = slices.Clone(s.txt.all)
	return true
}
