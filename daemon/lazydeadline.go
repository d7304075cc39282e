package daemon

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// lazyWrite holds a connection's write deadline without arming it while
// the writes do not block.
//
// Every response gets a write deadline (listen.go), and net/http clears
// it after the response; either way the runtime's timer for it stays in
// its timer heap until the deadline's time (Go removes a stopped timer
// lazily). An idle daemon then woke 30 s after its last request: the
// network poller, asleep until that stale time, woke up to 30 ms late by
// the kernel's epoll timeout slack, and the runtime's monitor thread
// (sysmon), woken on time, polled every 20 µs until it did: 0.1–1.9 ms of
// CPU about 30 s after ready with no client, most of an idle minute's
// with discovery off (issue 15, docs/performance.md). A response to a
// client that reads fits the socket's buffer and never waits, so it
// needs no timer: the deadline is armed on the socket only when a write
// cannot complete at once, which is the only time it can cut anything
// off. A client that stops reading is cut off exactly as before.
type lazyWrite struct {
	wmu      sync.Mutex // held for a whole Write: its two steps are one write
	mu       sync.Mutex
	deadline time.Time // what the server asked for; zero: none
	armed    bool      // set on the socket (only once a write had to wait)
	writing  bool      // a Write is in progress: a deadline set now reaches the socket

	// The try without waiting, made once per connection rather than per
	// write (every response is one): the socket's RawConn and the
	// function RawConn.Write calls, with its bytes and results. Guarded
	// by wmu.
	raw   syscall.RawConn
	rawFn func(fd uintptr) bool
	p     []byte
	n     int
	err   error
}

// SetWriteDeadline records t; it reaches the socket only if the socket's
// deadline is armed already (moving or clearing it).
func (c *limitConn) SetWriteDeadline(t time.Time) error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	c.w.deadline = t
	if !c.w.armed && !c.w.writing {
		return nil
	}
	c.w.armed = !t.IsZero()
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets the read deadline on the socket and the write
// deadline as SetWriteDeadline does.
func (c *limitConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// Write tries p without waiting first; what the socket cannot take at
// once is written under the deadline, armed now.
//
// A Write is one write for concurrent writers, as net.Conn promises, and
// a deadline another goroutine sets while it blocks reaches the socket.
func (c *limitConn) Write(p []byte) (int, error) {
	c.w.wmu.Lock()
	defer c.w.wmu.Unlock()
	c.w.mu.Lock()
	c.w.writing = true
	try := !c.w.armed && !c.w.deadline.IsZero() // a deadline is asked for and not armed yet
	// Once the deadline has passed nothing is tried: the write then fails
	// under it, as it would have.
	try = try && time.Now().Before(c.w.deadline)
	c.w.mu.Unlock()
	defer c.setWriting(false)
	n := 0
	if try {
		var err error
		n, err = c.writeNow(p)
		if err != nil || n == len(p) {
			return n, err
		}
	}
	if err := c.armWrite(); err != nil {
		return n, err
	}
	m, err := c.Conn.Write(p[n:])
	return n + m, err
}

func (c *limitConn) setWriting(on bool) {
	c.w.mu.Lock()
	c.w.writing = on
	c.w.mu.Unlock()
}

// armWrite sets the recorded write deadline on the socket, if one is
// asked for and not armed yet.
func (c *limitConn) armWrite() error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if c.w.armed || c.w.deadline.IsZero() {
		return nil
	}
	c.w.armed = true
	return c.Conn.SetWriteDeadline(c.w.deadline)
}

// writeNow writes what the socket takes without waiting: nothing if the
// kernel's buffer is full or the connection is not a socket. c.w.wmu is
// held.
func (c *limitConn) writeNow(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.w.raw == nil {
		sc, ok := c.Conn.(syscall.Conn)
		if !ok {
			return 0, nil
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return 0, nil
		}
		c.w.raw, c.w.rawFn = raw, c.tryWrite
	}
	// n and err are reset: RawConn.Write returns without calling back
	// when the connection is closed or its deadline has passed, and the
	// previous write's count must not be reported for this one.
	c.w.p, c.w.n, c.w.err = p, 0, nil
	err := c.w.raw.Write(c.w.rawFn)
	n, werr := c.w.n, c.w.err
	c.w.p, c.w.err = nil, nil
	switch {
	case errors.Is(werr, syscall.EAGAIN): // the buffer is full: wait, under the deadline
		n, werr = 0, nil
	case n < 0: // an error (EPIPE, ECONNRESET): reported below
		n = 0
	}
	if err != nil {
		return n, err
	}
	if werr != nil {
		return n, &net.OpError{Op: "write", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: werr}
	}
	return n, nil
}

// tryWrite is the RawConn.Write callback of writeNow: one write of c.w.p,
// never waiting (the caller arms the deadline first).
func (c *limitConn) tryWrite(fd uintptr) bool {
	for {
		c.w.n, c.w.err = writeFD(fd, c.w.p)
		if !errors.Is(c.w.err, syscall.EINTR) {
			return true
		}
	}
}
