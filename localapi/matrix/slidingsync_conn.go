package matrix

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Sliding sync connections (MSC4186 §"Connections"). A connection is keyed
// by (user, device, conn_id) and lives in memory only: a daemon restart,
// or dropping it to keep the table bounded, ends it, and its next pos gets
// 400 M_UNKNOWN_POS, the MSC's way of telling the client to start again
// from scratch. Persisting them would make every response a write for a
// gain (a quicker first sync after a restart) a personal server rarely
// sees; the reset costs the client one initial request.

const (
	// maxConnsPerDevice bounds the conn_ids of one device; the least
	// recently used is dropped first (MSC4186 §"Security considerations").
	maxConnsPerDevice = 16
	// maxConnsPerUser bounds the connections of one user across their
	// devices, so a user with many devices cannot push other users'
	// connections out of the table; their own least recently used goes.
	maxConnsPerUser = 64
	// maxConns bounds the whole table.
	maxConns = 1024
	// maxPending bounds the responses a connection keeps that the client
	// has not acknowledged yet.
	maxPending = 4
)

type slidingKey struct{ user, device, connID string }

// slidingState is what a connection knows after one response: the stream
// positions it covered, which rooms it sent and up to which position, and
// the list counts it reported. A state is never changed once made; the
// next response makes a new one.
type slidingState struct {
	counter   uint64
	pos, eph  uint64
	sent      map[string]sentRoom // room ID → how far the room was sent
	counts    map[string]int      // list key → count last reported
	toDevice  uint64              // to-device messages delivered up to here
	accountDP uint64              // account data sent up to here
}

// sentRoom is how far a connection sent a room: up to which position, and
// how many of its latest events the client holds (the largest
// timeline_limit sent since the last gap), for timeline expansion, and
// whether it was a DM.
type sentRoom struct {
	pos   uint64
	limit int
	dm    bool   // is_dm as last sent
	state string // roomConfig.stateKey of the required_state last sent
}

type slidingConn struct {
	key slidingKey
	id  uint64
	// confirmed is the state of the pos the client last sent; pending are
	// the states of the responses made from it since (more than one when
	// the client retried, or cancelled a request whose response was made
	// anyway), the last few kept: the one whose pos the client sends next
	// becomes confirmed and the others go (§"Connections": the server
	// must handle several requests with the latest pos).
	confirmed *slidingState
	pending   []*slidingState
	next      uint64
	used      time.Time
}

// slidingConns is the connection table. Its zero value is ready.
type slidingConns struct {
	mu     sync.Mutex
	epoch  string // random per process: positions do not survive a restart
	nextID uint64
	conns  map[slidingKey]*slidingConn
}

func (t *slidingConns) init() {
	if t.conns == nil {
		b := make([]byte, 6)
		rand.Read(b)
		t.epoch = hex.EncodeToString(b)
		t.conns = map[slidingKey]*slidingConn{}
	}
}

// token is the pos given to the client for a state of a connection.
func (t *slidingConns) token(c *slidingConn, st *slidingState) string {
	return t.epoch + "_" + strconv.FormatUint(c.id, 10) + "_" + strconv.FormatUint(st.counter, 10)
}

// start opens a new connection for key, replacing any with the same key
// (a request without pos starts the connection again).
func (t *slidingConns) start(key slidingKey) (*slidingConn, *slidingState) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.init()
	t.nextID++
	c := &slidingConn{key: key, id: t.nextID, used: time.Now(), next: 1,
		confirmed: &slidingState{sent: map[string]sentRoom{}, counts: map[string]int{}}}
	t.conns[key] = c
	t.bound(key)
	return c, c.confirmed
}

// resume finds the state a pos names: the connection's confirmed state or
// one of its pending ones. Anything else — a pos from before a restart, of a
// dropped connection, of another device, an older one, or made up — is
// M_UNKNOWN_POS.
func (t *slidingConns) resume(key slidingKey, pos string) (*slidingConn, *slidingState, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.init()
	unknown := &matrixerr.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN_POS",
		Message: "unknown pos: start the connection again"}
	parts := strings.Split(pos, "_")
	if len(parts) != 3 || parts[0] != t.epoch {
		return nil, nil, unknown
	}
	id, err1 := strconv.ParseUint(parts[1], 10, 64)
	n, err2 := strconv.ParseUint(parts[2], 10, 64)
	c := t.conns[key]
	if err1 != nil || err2 != nil || c == nil || c.id != id {
		return nil, nil, unknown
	}
	c.used = time.Now()
	if c.confirmed.counter == n {
		return c, c.confirmed, nil
	}
	for _, st := range c.pending {
		if st.counter == n {
			c.confirmed, c.pending = st, nil
			return c, c.confirmed, nil
		}
	}
	return nil, nil, unknown
}

// commit records the state of a response about to be sent and returns its
// pos. A connection replaced or dropped meanwhile gets a pos that will be
// unknown, which is right: another request took over its key.
func (t *slidingConns) commit(c *slidingConn, st *slidingState) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	st.counter = c.next
	c.next++
	if len(c.pending) == maxPending {
		c.pending = c.pending[1:]
	}
	c.pending = append(c.pending, st)
	c.used = time.Now()
	return t.token(c, st)
}

// bound drops the least recently used connections of key's device past
// maxConnsPerDevice, of key's user past maxConnsPerUser, and of the whole
// table past maxConns. Called with mu held; linear in the table, which is
// small, and only when a connection starts.
func (t *slidingConns) bound(key slidingKey) {
	for {
		var dev, user, all int
		var oldestDev, oldestUser, oldest *slidingConn
		for k, c := range t.conns {
			all++
			if oldest == nil || c.used.Before(oldest.used) {
				oldest = c
			}
			if k.user != key.user {
				continue
			}
			user++
			if oldestUser == nil || c.used.Before(oldestUser.used) {
				oldestUser = c
			}
			if k.device == key.device {
				dev++
				if oldestDev == nil || c.used.Before(oldestDev.used) {
					oldestDev = c
				}
			}
		}
		switch {
		case dev > maxConnsPerDevice:
			delete(t.conns, oldestDev.key)
		case user > maxConnsPerUser:
			delete(t.conns, oldestUser.key)
		case all > maxConns:
			delete(t.conns, oldest.key)
		default:
			return
		}
	}
}

// next makes the state a response starts from: a copy of base.
func (st *slidingState) clone() *slidingState {
	return &slidingState{pos: st.pos, eph: st.eph, sent: maps.Clone(st.sent), counts: maps.Clone(st.counts),
		toDevice: st.toDevice, accountDP: st.accountDP}
}

// count reports how many connections the table holds (for tests).
func (t *slidingConns) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}
