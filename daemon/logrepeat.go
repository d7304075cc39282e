package daemon

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// repeatKeyAttrs are the attributes that, with the level and message, make
// two log records "the same warning": a peer that keeps failing repeats one
// line per request, while another peer's failure is news. Other attributes
// (errors, paths, IDs) vary between repeats and are not part of the key.
var repeatKeyAttrs = map[string]bool{"origin": true, "destination": true, "server": true,
	"server_name": true, "peer": true, "via": true, "room": true, "room_id": true, "user": true}

// repeatLimiter is a slog.Handler that logs the first of identical records
// below error level and swallows the rest for a window, then logs one
// summary "(repeated N times)". A flood of the same warning (a peer that
// retries every second, a client that keeps sending a bad request) so
// costs a line a minute and cannot push everything else out of the log
// ring or the disk. Errors always pass. It remembers at most max distinct
// keys; the oldest is summarised and forgotten first.
type repeatLimiter struct {
	next   slog.Handler
	preset string // key attributes added with WithAttrs
	group  string // WithGroup prefix: attributes inside a group are not key attributes
	st     *repeatState
}

type repeatState struct {
	mu      sync.Mutex
	window  time.Duration
	max     int
	now     func() time.Time
	entries map[string]*list.Element // of *repeatEntry
	order   *list.List               // oldest window first
	// timer is armed only while a swallowed record waits for its summary,
	// for the end of that window: an idle daemon has no timer to wake it.
	timer   *time.Timer
	stopped bool // flushed at shutdown: no more timers
}

type repeatEntry struct {
	key        string
	start      time.Time
	suppressed int
	h          slog.Handler // the handler that logged the first record
	level      slog.Level
	msg        string
	attrs      []slog.Attr // its key attributes, repeated in the summary
}

func newRepeatLimiter(next slog.Handler, window time.Duration, max int, now func() time.Time) *repeatLimiter {
	return &repeatLimiter{next: next, st: &repeatState{window: window, max: max, now: now,
		entries: map[string]*list.Element{}, order: list.New()}}
}

func (l *repeatLimiter) Enabled(ctx context.Context, level slog.Level) bool {
	return l.next.Enabled(ctx, level)
}

func (l *repeatLimiter) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.next = l.next.WithAttrs(as)
	if l.group == "" {
		var b strings.Builder
		b.WriteString(l.preset)
		for _, a := range as {
			if repeatKeyAttrs[a.Key] {
				fmt.Fprintf(&b, "\x00%s=%s", a.Key, a.Value)
			}
		}
		c.preset = b.String()
	}
	return &c
}

func (l *repeatLimiter) WithGroup(name string) slog.Handler {
	c := *l
	c.next = l.next.WithGroup(name)
	c.group += name + "."
	return &c
}

func (l *repeatLimiter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		return l.next.Handle(ctx, r)
	}
	msg := repeatKeyMessage(r.Message)
	var b strings.Builder
	fmt.Fprintf(&b, "%d\x00%s%s", r.Level, msg, l.preset)
	var keyAttrs []slog.Attr
	if l.group == "" {
		r.Attrs(func(a slog.Attr) bool {
			if repeatKeyAttrs[a.Key] {
				fmt.Fprintf(&b, "\x00%s=%s", a.Key, a.Value)
				keyAttrs = append(keyAttrs, a)
			}
			return true
		})
	}
	key := b.String()
	st := l.st
	now := st.now()
	st.mu.Lock()
	summaries := st.expireLocked(now)
	if el, ok := st.entries[key]; ok {
		el.Value.(*repeatEntry).suppressed++
		st.armLocked(now, l.sweep)
		st.mu.Unlock()
		emit(summaries)
		return nil
	}
	if st.order.Len() >= st.max { // forget the oldest to stay bounded
		summaries = append(summaries, st.removeLocked(st.order.Front())...)
	}
	st.entries[key] = st.order.PushBack(&repeatEntry{key: key, start: now, h: l.next,
		level: r.Level, msg: msg, attrs: keyAttrs})
	st.mu.Unlock()
	emit(summaries)
	return l.next.Handle(ctx, r)
}

// repeatKeyMessage is the part of a message that identifies it. net/http's
// server log lines (through the listeners' ErrorLog) name the client's
// address and port, so a network peer that opens a thousand bad TLS
// connections would make a thousand distinct lines: for those the key is
// the text before " from ".
func repeatKeyMessage(msg string) string {
	if strings.HasPrefix(msg, "http: ") || strings.HasPrefix(msg, "http2: ") {
		if i := strings.Index(msg, " from "); i > 0 {
			return msg[:i]
		}
	}
	return msg
}

// expireLocked forgets the keys whose window ended, returning their
// summaries.
func (st *repeatState) expireLocked(now time.Time) []summary {
	var out []summary
	for el := st.order.Front(); el != nil && !now.Before(el.Value.(*repeatEntry).start.Add(st.window)); el = st.order.Front() {
		out = append(out, st.removeLocked(el)...)
	}
	return out
}

func (st *repeatState) removeLocked(el *list.Element) []summary {
	e := st.order.Remove(el).(*repeatEntry)
	delete(st.entries, e.key)
	if e.suppressed == 0 {
		return nil
	}
	times := "times"
	if e.suppressed == 1 {
		times = "time"
	}
	r := slog.NewRecord(st.now(), e.level, fmt.Sprintf("%s (repeated %d %s)", e.msg, e.suppressed, times), 0)
	r.AddAttrs(e.attrs...)
	r.AddAttrs(slog.Int("repeated", e.suppressed), slog.Duration("within", st.window))
	return []summary{{e.h, r}}
}

type summary struct {
	h slog.Handler
	r slog.Record
}

func emit(ss []summary) {
	for _, s := range ss {
		s.h.Handle(context.Background(), s.r)
	}
}

// armLocked sets the timer for the end of the oldest window that
// swallowed a record, unless one is set.
func (st *repeatState) armLocked(now time.Time, sweep func()) {
	if st.timer != nil || st.stopped {
		return
	}
	for el := st.order.Front(); el != nil; el = el.Next() {
		if e := el.Value.(*repeatEntry); e.suppressed > 0 {
			st.timer = time.AfterFunc(e.start.Add(st.window).Sub(now), sweep)
			return
		}
	}
}

// sweep writes the summaries of windows that have ended, so a burst that
// stopped is still counted without waiting for the next record; the
// timer calls it, then it arms the timer for the next such window.
func (l *repeatLimiter) sweep() {
	st := l.st
	st.mu.Lock()
	st.timer = nil
	now := st.now()
	ss := st.expireLocked(now)
	st.armLocked(now, l.sweep)
	st.mu.Unlock()
	emit(ss)
}

// flush writes every pending summary (at shutdown).
func (l *repeatLimiter) flush() {
	st := l.st
	st.mu.Lock()
	st.stopped = true
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
	var ss []summary
	for st.order.Len() > 0 {
		ss = append(ss, st.removeLocked(st.order.Front())...)
	}
	st.mu.Unlock()
	emit(ss)
}
