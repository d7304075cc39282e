package matrix

import (
	"encoding/json"
	"sync"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// filterCache keeps the stored filters /sync was given by ID, parsed and
// validated, so that a client's every long poll (Element passes a filter
// ID on each) does not read and parse the same filter again. A stored
// filter never changes: POST /filter stores a new one under a new ID from
// the bucket's sequence (account.PutFilter), and none is ever rewritten,
// so the cache needs no invalidation. It is keyed by user as well as ID:
// one user may not use another's filter.
type filterCache struct {
	mu      sync.Mutex
	entries map[[2]string]*filter // {localpart, id} → never modified once stored
	// inline are filters given inline as JSON (as hearth-bench and some
	// bots do on every long poll), keyed by their exact text: the parsed
	// filter is a function of the text alone, whoever sends it.
	inline map[string]*filter
}

// maxInlineFilterText bounds the inline filters kept, by length.
const maxInlineFilterText = 4096

// inlineFilter is the filter given inline as JSON text, parsed and
// validated. The caller must not modify it.
func (s *Server) inlineFilter(text string) (*filter, error) {
	s.filters.mu.Lock()
	f := s.filters.inline[text]
	s.filters.mu.Unlock()
	if f != nil {
		return f, nil
	}
	f = &filter{text: text}
	if err := json.Unmarshal([]byte(text), f); err != nil {
		return nil, matrixerr.BadJSON("filter is not a valid Filter")
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	if len(text) <= maxInlineFilterText {
		s.filters.mu.Lock()
		if s.filters.inline == nil || len(s.filters.inline) >= maxCachedFilters {
			s.filters.inline = map[string]*filter{}
		}
		s.filters.inline[text] = f
		s.filters.mu.Unlock()
	}
	return f, nil
}

// maxCachedFilters bounds the cache; past it the cache starts over.
const maxCachedFilters = 1024

// storedFilter is the user's stored filter with that ID, parsed and
// validated. The caller must not modify it.
func (s *Server) storedFilter(localpart, id string) (*filter, error) {
	key := [2]string{localpart, id}
	s.filters.mu.Lock()
	f := s.filters.entries[key]
	s.filters.mu.Unlock()
	if f != nil {
		return f, nil
	}
	raw, err := s.accounts.Filter(localpart, id)
	if err != nil {
		return nil, matrixerr.InvalidParam("unknown filter ID")
	}
	f = &filter{text: string(raw)}
	if err := json.Unmarshal(raw, f); err != nil {
		return nil, matrixerr.BadJSON("filter is not a valid Filter")
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	s.filters.mu.Lock()
	if s.filters.entries == nil || len(s.filters.entries) >= maxCachedFilters {
		s.filters.entries = map[[2]string]*filter{}
	}
	s.filters.entries[key] = f
	s.filters.mu.Unlock()
	return f, nil
}
