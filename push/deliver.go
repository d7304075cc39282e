package push

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"maunium.net/go/mautrix/pushrules"

	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// queued is one notification waiting for a pusher (bucket pushqueue).
type queued struct {
	Body     json.RawMessage `json:"body"`
	Attempts int             `json:"attempts"`
	NextAt   int64           `json:"next_at"` // unix ms of the next try
}

// enqueueTx queues the notification of one event for each of the user's
// pushers, as the Push Gateway API's POST /_matrix/push/v1/notify body.
func (s *Service) enqueueTx(tx *store.Tx, pe *room.PushEvent, r Result, unread int) error {
	prefix := store.Key(r.UserID, "")
	c := tx.Cursor(store.Pushers)
	for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
		var p Pusher
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("push: decode pusher: %w", err)
		}
		body, err := json.Marshal(map[string]any{"notification": notification(pe, r, p, unread)})
		if err != nil {
			return fmt.Errorf("push: encode notification: %w", err)
		}
		seq, err := tx.NextID(store.PushQueue)
		if err != nil {
			return err
		}
		q, _ := json.Marshal(queued{Body: body})
		key := append(append(append([]byte(nil), k...), 0), store.PutU64(seq)...)
		if err := tx.Put(store.PushQueue, key, q); err != nil {
			return err
		}
	}
	return nil
}

// notification builds the Push Gateway API notification object for one
// pusher; with data.format event_id_only it leaves out the event's details.
func notification(pe *room.PushEvent, r Result, p Pusher, unread int) map[string]any {
	data := map[string]any{}
	for k, v := range p.Data {
		if k != "url" {
			data[k] = v
		}
	}
	tweaks := map[string]any{}
	prio := "low"
	for _, a := range r.Actions {
		if a.Action == pushrules.ActionSetTweak {
			v := a.Value
			if v == nil && a.Tweak == pushrules.TweakHighlight {
				v = true // a highlight tweak without a value means true (§"Actions")
			}
			if v != nil {
				tweaks[string(a.Tweak)] = v
			}
			prio = "high"
		}
	}
	n := map[string]any{
		"event_id": pe.Event.EventID,
		"room_id":  pe.RoomID,
		"prio":     prio,
		"counts":   map[string]any{"unread": unread},
		"devices": []any{map[string]any{"app_id": p.AppID, "pushkey": p.Pushkey, "pushkey_ts": p.PushkeyTS / 1000,
			"data": data, "tweaks": tweaks}},
	}
	if p.Data["format"] == "event_id_only" {
		return n
	}
	n["type"] = pe.Event.Type
	n["sender"] = pe.Event.Sender
	if pe.SenderName != "" {
		n["sender_display_name"] = pe.SenderName
	}
	if pe.RoomName != "" {
		n["room_name"] = pe.RoomName
	}
	n["content"] = pe.Event.Content
	if pe.Event.Type == "m.room.member" && pe.Event.StateKey != nil {
		n["user_is_target"] = *pe.Event.StateKey == r.UserID
	}
	return n
}

// deliver sends queued notifications to their gateways. It sleeps on a
// timer for the next retry or on the wake channel for new work; it never
// polls. The queue is in bbolt, so a restart resumes where it stopped,
// retry times included.
func (s *Service) deliver(ctx context.Context) {
	for {
		next := s.deliverDue(ctx)
		var timer *time.Timer
		var fire <-chan time.Time
		if next != 0 {
			timer = time.NewTimer(time.Until(time.UnixMilli(next)))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-s.wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

type head struct {
	key    []byte
	pusher []byte
	q      queued
}

// deliverDue sends, pusher by pusher in queue order, every notification
// that is due; it returns when the next retry falls due (unix ms), 0 if
// nothing waits.
func (s *Service) deliverDue(ctx context.Context) int64 {
	for ctx.Err() == nil {
		heads, next := s.dueHeads()
		if len(heads) == 0 {
			return next
		}
		for _, h := range heads {
			s.attempt(ctx, h)
		}
	}
	return 0
}

// dueHeads returns the first queued notification of every pusher whose
// turn has come, and the earliest later retry time.
func (s *Service) dueHeads() ([]head, int64) {
	var heads []head
	var next int64
	now := s.now().UnixMilli()
	s.db.View(func(tx *store.Tx) error {
		c := tx.Cursor(store.PushQueue)
		var last []byte
		for k, v := c.First(); k != nil; k, v = c.Next() {
			pk := k[:len(k)-9]
			if last != nil && bytes.Equal(pk, last) {
				continue // only a pusher's oldest notification is eligible
			}
			last = append([]byte(nil), pk...)
			var q queued
			if json.Unmarshal(v, &q) != nil {
				continue
			}
			if q.NextAt > now {
				if next == 0 || q.NextAt < next {
					next = q.NextAt
				}
				continue
			}
			heads = append(heads, head{key: append([]byte(nil), k...), pusher: last, q: q})
		}
		return nil
	})
	return heads, next
}

// attempt posts one notification and records the outcome: success or a
// client error drops it; a server error or no answer schedules a retry
// with exponential backoff; pushkeys the gateway rejects lose their pusher.
func (s *Service) attempt(ctx context.Context, h head) {
	var p Pusher
	var missing bool
	s.db.View(func(tx *store.Tx) error {
		b := tx.Get(store.Pushers, h.pusher)
		missing = b == nil || json.Unmarshal(b, &p) != nil
		return nil
	})
	url, _ := p.Data["url"].(string)
	status, rejected, err := 0, []string(nil), error(nil)
	if !missing {
		status, rejected, err = s.post(ctx, url, h.q.Body)
		if err != nil && ctx.Err() != nil {
			return // cut short by Stop: keep it queued as it is
		}
	}
	retry := !missing && (err != nil || status >= 500 || status == http.StatusTooManyRequests)
	if retry {
		s.log.Warn("push: gateway delivery failed", "url", url, "status", status, "err", err, "attempt", h.q.Attempts+1)
	}
	s.db.Update(context.Background(), func(tx *store.Tx) error {
		if tx.Get(store.PushQueue, h.key) == nil {
			return nil
		}
		if retry && h.q.Attempts+1 < s.opts.MaxAttempts {
			h.q.Attempts++
			delay := s.opts.RetryBase << min(h.q.Attempts-1, 30)
			if delay <= 0 || delay > s.opts.RetryMax {
				delay = s.opts.RetryMax
			}
			h.q.NextAt = s.now().Add(delay).UnixMilli()
			b, _ := json.Marshal(h.q)
			return tx.Put(store.PushQueue, h.key, b)
		}
		if err := tx.Delete(store.PushQueue, h.key); err != nil {
			return err
		}
		for _, pk := range rejected {
			parts := strings.Split(string(h.pusher), "\x00")
			if len(parts) == 3 && pk == parts[2] {
				return deletePusherTx(tx, h.pusher)
			}
		}
		return nil
	})
}

// post sends the body to the gateway and reads its rejected pushkeys.
func (s *Service) post(ctx context.Context, url string, body []byte) (int, []string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Rejected []string `json:"rejected"`
	}
	if resp.StatusCode/100 == 2 {
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&out)
	}
	return resp.StatusCode, out.Rejected, nil
}
