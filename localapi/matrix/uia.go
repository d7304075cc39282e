package matrix

import (
	"container/list"
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
// they last minutes and are worthless after a restart. A session expires
// uiaIdle after it was last used, and there are at most maxUIASessions
// (the least recently used goes first), so that clients which start
// sessions and never finish them cannot grow memory. Sessions are kept in
// last-used order: expired ones are at the front, and dropping them costs
// O(1) each.
type uiaSessions struct {
	mu       sync.Mutex
	sessions map[string]*list.Element // of *uiaSession
	order    *list.List               // least recently used first
	max      int
	idle     time.Duration
	now      func() time.Time
}

type uiaSession struct {
	id        string
	completed []string
	used      time.Time
}

const (
	maxUIASessions = 10000
	uiaIdle        = 15 * time.Minute
)

func newUIASessions() *uiaSessions {
	return &uiaSessions{sessions: map[string]*list.Element{}, order: list.New(),
		max: maxUIASessions, idle: uiaIdle, now: time.Now}
}

// session returns the live session id (or a new one if id is empty or
// unknown), marked as used now. Call with u.mu held.
func (u *uiaSessions) session(id string) *uiaSession {
	now := u.now()
	for e := u.order.Front(); e != nil && now.Sub(e.Value.(*uiaSession).used) > u.idle; e = u.order.Front() {
		u.drop(e.Value.(*uiaSession))
	}
	if e := u.sessions[id]; id != "" && e != nil {
		s := e.Value.(*uiaSession)
		s.used = now
		u.order.MoveToBack(e)
		return s
	}
	for u.order.Len() >= u.max {
		u.drop(u.order.Front().Value.(*uiaSession))
	}
	s := &uiaSession{id: account.RandomString(16), used: now}
	u.sessions[s.id] = u.order.PushBack(s)
	return s
}

func (u *uiaSessions) drop(s *uiaSession) {
	if e := u.sessions[s.id]; e != nil {
		u.order.Remove(e)
		delete(u.sessions, s.id)
	}
}

func (u *uiaSessions) size() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.sessions)
}

// require runs one step of UIA for the request body. It returns nil once
// some flow is complete, and otherwise the 401 challenge to send: the
// flows, the session and, if a stage just failed, its error. The stage is
// checked without the sessions' lock held: a password check takes a
// bcrypt hash's time, and must not hold up every other UIA request.
func (u *uiaSessions) require(body []byte, flows [][]string, check func(stage string, auth uiaAuth) error) error {
	var req struct {
		Auth *uiaAuth `json:"auth"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return matrixerr.BadJSON("auth must be an object")
	}
	id := ""
	if req.Auth != nil {
		id = req.Auth.Session
	}
	u.mu.Lock()
	sess := u.session(id)
	u.mu.Unlock()

	var stageErr error
	passed := ""
	if req.Auth != nil && req.Auth.Type != "" {
		if !allowedStage(flows, req.Auth.Type) {
			stageErr = matrixerr.Unknown("unsupported auth type " + req.Auth.Type)
		} else if err := check(req.Auth.Type, *req.Auth); err != nil {
			stageErr = err
		} else {
			passed = req.Auth.Type
		}
	}

	u.mu.Lock()
	defer u.mu.Unlock()
	if passed != "" && !slices.Contains(sess.completed, passed) {
		sess.completed = append(sess.completed, passed)
	}
	for _, f := range flows {
		done := true
		for _, st := range f {
			if !slices.Contains(sess.completed, st) {
				done = false
			}
		}
		if done {
			u.drop(sess)
			return nil
		}
	}
	challenge := &matrixerr.Error{Status: http.StatusUnauthorized}
	var fatal uiaFatal
	if errors.As(stageErr, &fatal) {
		return fatal.err
	}
	if me, ok := stageErr.(*matrixerr.Error); ok && me.Status == http.StatusTooManyRequests {
		// Guessing limits answer as themselves, with retry_after_ms.
		return me
	} else if ok {
		challenge.Code, challenge.Message = me.Code, me.Message
	} else if stageErr != nil {
		return stageErr
	}
	fl := make([]map[string]any, len(flows))
	for i, f := range flows {
		fl[i] = map[string]any{"stages": f}
	}
	challenge.Extra = map[string]any{"flows": fl, "params": map[string]any{}, "session": sess.id,
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
