package daemon

import (
	"container/list"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/hearth-chat/hearth/federation/ratelimit"
)

// The listeners' connection caps (issue 10); the deadlines every
// connection is held to are in listen.go.

// limitListener caps the connections a listener keeps open, in total and
// per remote address. At the total cap the connection idle longest (a
// keep-alive between requests, or one that has not sent a byte yet) is
// closed to make room; if none is idle, the one that has been reading a
// request body longest (a slowloris flood fills the cap with those); if
// there is none of either, the new connection is closed at once. Over
// the per-address cap a new connection is closed at once.
type limitListener struct {
	net.Listener
	name    string // for logs: "client", "federation"
	total   int
	perAddr int // 0: no per-address cap

	mu     sync.Mutex
	open   int
	byAddr map[string]int
	idle   *list.List // of *limitConn, longest idle first
	slow   *list.List // of *limitConn reading a request body, longest first
	shed   int        // connections closed by a cap, for the log
}

func newLimitListener(ln net.Listener, name string, total, perAddr int) *limitListener {
	return &limitListener{Listener: ln, name: name, total: total, perAddr: perAddr,
		byAddr: map[string]int{}, idle: list.New(), slow: list.New()}
}

// Accept returns the next connection within the caps. Its errors are the
// inner listener's, unchanged: http.Server backs off on temporary ones
// such as EMFILE rather than spinning.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
		c.Close()
	}
}

// admit counts c in, shedding the longest-idle connection at the total
// cap; nil means c is refused.
func (l *limitListener) admit(c net.Conn) *limitConn {
	addr := remoteHost(c)
	l.mu.Lock()
	if l.perAddr > 0 && l.byAddr[addr] >= l.perAddr {
		l.refused("per-address cap", addr)
		l.mu.Unlock()
		return nil
	}
	var victim *limitConn
	if l.open >= l.total {
		why := "connection cap, closed the longest idle"
		front := l.idle.Front()
		if front == nil {
			why, front = "connection cap, none idle: closed the slowest body", l.slow.Front()
		}
		if front == nil {
			l.refused("connection cap, none idle or reading a body", addr)
			l.mu.Unlock()
			return nil
		}
		victim = front.Value.(*limitConn)
		l.unlist(victim)
		l.forget(victim) // counted out now, so the new one fits
		l.refused(why, victim.addr)
	}
	lc := &limitConn{Conn: c, l: l, addr: addr}
	l.open++
	l.byAddr[addr]++
	lc.idleAt = l.idle.PushBack(lc) // sent nothing yet
	l.mu.Unlock()
	if victim != nil {
		victim.Conn.Close()
	}
	return lc
}

// unlist takes lc off the idle and slow lists; the caller holds l.mu.
func (l *limitListener) unlist(lc *limitConn) {
	if lc.idleAt != nil {
		l.idle.Remove(lc.idleAt)
		lc.idleAt = nil
	}
	if lc.slowAt != nil {
		l.slow.Remove(lc.slowAt)
		lc.slowAt = nil
	}
}

// bodyStarted and bodyEnded bracket the reading of a request body on lc
// (HTTP/2 may read several at once).
func (l *limitListener) bodyStarted(lc *limitConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.bodies++; lc.bodies == 1 && !lc.gone {
		lc.slowAt = l.slow.PushBack(lc)
	}
}

func (l *limitListener) bodyEnded(lc *limitConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.bodies--; lc.bodies == 0 && lc.slowAt != nil {
		l.slow.Remove(lc.slowAt)
		lc.slowAt = nil
	}
}

// refused counts a connection closed by a cap and logs the first of a
// burst, then every 1000th, so a flood cannot flood the log too.
func (l *limitListener) refused(why, addr string) {
	l.shed++
	if l.shed == 1 || l.shed%1000 == 0 {
		slog.Warn("listener at its cap: closing connections", "listener", l.name, "why", why,
			"remote", addr, "closed_so_far", l.shed, "cap_total", l.total, "cap_per_address", l.perAddr)
	}
}

// forget counts lc out; the caller holds l.mu.
func (l *limitListener) forget(lc *limitConn) {
	if lc.gone {
		return
	}
	lc.gone = true
	l.open--
	if l.byAddr[lc.addr]--; l.byAddr[lc.addr] <= 0 {
		delete(l.byAddr, lc.addr)
	}
}

// connState is the http.Server hook that tells the listener which
// connections are idle and may be shed.
func (l *limitListener) connState(c net.Conn, s http.ConnState) {
	lc := asLimitConn(c)
	if lc == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.idleAt != nil {
		l.idle.Remove(lc.idleAt)
		lc.idleAt = nil
	}
	switch s {
	case http.StateIdle, http.StateNew:
		if !lc.gone {
			lc.idleAt = l.idle.PushBack(lc)
		}
	case http.StateClosed, http.StateHijacked:
		l.unlist(lc)
		l.forget(lc)
	}
}

// asLimitConn finds the *limitConn under what http.Server holds (a
// *tls.Conn on the federation listener); nil if there is none.
func asLimitConn(c net.Conn) *limitConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, _ := c.(*limitConn)
	return lc
}

// counts returns the open connections and how many of them are idle.
func (l *limitListener) counts() (open, idle int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.idle.Len()
}

// limitConn is one admitted connection; closing it counts it out.
type limitConn struct {
	net.Conn
	l    *limitListener
	addr string
	// Guarded by l.mu:
	idleAt *list.Element // its place in l.idle while idle
	slowAt *list.Element // its place in l.slow while reading a body
	bodies int           // request bodies being read (HTTP/2: several)
	gone   bool          // already counted out

	w lazyWrite // the write deadline, armed only when a write must wait (lazydeadline.go)
}

// ReadFrom passes a response's file copy on to the TCP connection, which
// sends it with sendfile(2): net/http looks for io.ReaderFrom on the
// connection it was given, and an embedded net.Conn alone hides it.
func (c *limitConn) ReadFrom(r io.Reader) (int64, error) {
	if err := c.armWrite(); err != nil { // sendfile waits under the deadline
		return 0, err
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r) // armed above: plain writes
}

func (c *limitConn) Close() error {
	c.l.mu.Lock()
	c.l.unlist(c)
	c.l.forget(c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// remoteHost is the unit of the per-address cap: the connection's IPv4
// address or IPv6 /64 (one host commonly holds a whole /64), as
// federation's own per-client limits count (ratelimit.ClientKey).
func remoteHost(c net.Conn) string {
	addr := c.RemoteAddr().String()
	switch p := ratelimit.ClientKey(addr); {
	case p.IsValid() && p.Addr().Is4():
		return p.Addr().String()
	case p.IsValid():
		return p.String()
	}
	return addr
}
