package appservice

import (
	"bytes"
	"sync"

	"time"

	"github.com/hearth-chat/hearth/internal/store"
)

// Health is what the control API shows of an appservice: the last request
// it answered well, what waits for it, the last failure. It lives in
// memory; the queue's depth is read from bbolt by the queue.
type Health struct {
	LastSuccess time.Time
	Queued      int
	LastError   string
	// Dropped counts events that found the queue full (bounded at
	// maxQueuedPerAS while the appservice is away).
	Dropped uint64
}

type healthBook struct {
	mu sync.Mutex
	m  map[string]*Health
}

func (h *healthBook) get(id string) *Health {
	if h.m == nil {
		h.m = map[string]*Health{}
	}
	if h.m[id] == nil {
		h.m[id] = &Health{}
	}
	return h.m[id]
}

// succeeded records an answered request.
func (h *healthBook) succeeded(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.get(id)
	e.LastSuccess, e.LastError = time.Now(), ""
}

// failed records a failed request.
func (h *healthBook) failed(id string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.get(id).LastError = err.Error()
}

// Health reports an appservice's health.
func (r *Registry) Health(id string) Health {
	r.health.mu.Lock()
	h := *r.health.get(id)
	r.health.mu.Unlock()
	if r.queued != nil {
		h.Queued = r.queued(id)
	}
	// The queue's stored state outlives a restart.
	r.db.View(func(tx *store.Tx) error {
		if r.queued == nil { // no queue running (hearth is stopped): count
			prefix := store.Key(id, "")
			c := tx.Cursor(store.AppserviceQueue)
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				h.Queued++
			}
		}
		st, err := loadState(tx, id)
		if err != nil {
			return nil
		}
		if t := time.UnixMilli(st.LastSuccess); st.LastSuccess != 0 && t.After(h.LastSuccess) {
			h.LastSuccess = t
		}
		if h.LastError == "" {
			h.LastError = st.LastError
		}
		h.Dropped = st.Dropped
		return nil
	})
	return h
}
