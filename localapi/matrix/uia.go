package matrix

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// uiaAuth is the "auth" object of a UIA request.
type uiaAuth struct {
	Type       string `json:"type"`
	Session    string `json:"session"`
	Password   string `json:"password"`
	User       string `json:"user"`
	Token      string `json:"token"`
	Identifier struct {
		Type string `json:"type"`
		User string `json:"user"`
	} `json:"identifier"`
}

// uiaSessions holds User-Interactive Authentication sessions in memory:
// they last minutes and are worthless after a restart.
type uiaSessions struct {
	mu       sync.Mutex
	sessions map[string]*uiaSession
}

type uiaSession struct {
	completed []string
	expires   time.Time
}

func newUIASessions() *uiaSessions { return &uiaSessions{sessions: map[string]*uiaSession{}} }

// require runs one step of UIA for the request body. It returns nil once
// some flow is complete, and otherwise the 401 challenge to send: the
// flows, the session and, if a stage just failed, its error.
func (u *uiaSessions) require(body []byte, flows [][]string, check func(stage string, auth uiaAuth) error) error {
	var req struct {
		Auth *uiaAuth `json:"auth"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return matrixerr.BadJSON("auth must be an object")
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	now := time.Now()
	for id, s := range u.sessions {
		if now.After(s.expires) {
			delete(u.sessions, id)
		}
	}
	var sess *uiaSession
	id := ""
	if req.Auth != nil && req.Auth.Session != "" {
		id = req.Auth.Session
		sess = u.sessions[id]
	}
	if sess == nil {
		id = account.RandomString(16)
		sess = &uiaSession{expires: now.Add(10 * time.Minute)}
		u.sessions[id] = sess
	}
	var stageErr error
	if req.Auth != nil && req.Auth.Type != "" {
		if !allowedStage(flows, req.Auth.Type) {
			stageErr = matrixerr.Unknown("unsupported auth type " + req.Auth.Type)
		} else if err := check(req.Auth.Type, *req.Auth); err != nil {
			stageErr = err
		} else if !slices.Contains(sess.completed, req.Auth.Type) {
			sess.completed = append(sess.completed, req.Auth.Type)
		}
	}
	for _, f := range flows {
		done := true
		for _, st := range f {
			if !slices.Contains(sess.completed, st) {
				done = false
			}
		}
		if done {
			delete(u.sessions, id)
			return nil
		}
	}
	challenge := &matrixerr.Error{Status: http.StatusUnauthorized}
	var fatal uiaFatal
	if errors.As(stageErr, &fatal) {
		return fatal.err
	}
	if me, ok := stageErr.(*matrixerr.Error); ok {
		challenge.Code, challenge.Message = me.Code, me.Message
	} else if stageErr != nil {
		return stageErr
	}
	fl := make([]map[string]any, len(flows))
	for i, f := range flows {
		fl[i] = map[string]any{"stages": f}
	}
	challenge.Extra = map[string]any{"flows": fl, "params": map[string]any{}, "session": id,
		"completed": append([]string{}, sess.completed...)}
	return challenge
}

// uiaFatal is a stage failure that ends the request instead of asking
// again: authenticating as another user is 403, not a 401 challenge
// (Synapse answers the same; Complement "DELETE /device/{deviceId}
// requires UI auth user to match device owner").
type uiaFatal struct{ err error }

func (f uiaFatal) Error() string { return f.err.Error() }

func allowedStage(flows [][]string, stage string) bool {
	for _, f := range flows {
		if slices.Contains(f, stage) {
			return true
		}
	}
	return false
}

// limiter counts failures per key in a leaky bucket: 5 failures in a burst,
// then one more allowed every 10 s. It guards password guessing; successful
// requests cost nothing.
type limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	level float64
	at    time.Time
}

const (
	limitBurst = 5
	limitLeak  = 10 * time.Second // one failure forgiven per interval
)

func newLimiter() *limiter { return &limiter{buckets: map[string]*bucket{}} }

func (l *limiter) drain(key string, now time.Time) *bucket {
	b := l.buckets[key]
	if b == nil {
		b = &bucket{at: now}
		l.buckets[key] = b
	}
	b.level -= float64(now.Sub(b.at)) / float64(limitLeak)
	if b.level < 0 {
		b.level = 0
	}
	b.at = now
	return b
}

// allow reports whether key may try again, and if not how long to wait.
func (l *limiter) allow(key string) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.drain(key, time.Now())
	if b.level < limitBurst {
		return true, 0
	}
	wait := time.Duration((b.level - limitBurst + 1) * float64(limitLeak))
	return false, wait.Milliseconds()
}

// fail records one failure for key.
func (l *limiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drain(key, time.Now()).level++
	if len(l.buckets) > 10000 {
		// Bound memory under a flood of distinct keys.
		for k, b := range l.buckets {
			if b.level == 0 {
				delete(l.buckets, k)
			}
		}
	}
}
