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
	c.setWriting(true)
	defer c.setWriting(false)
	n := 0
	if c.wantsDeadline() {
		var err error
		n, err = c.writeNow(p)
		if err != nil || n == len(p) {
			return n, err
		}
		if err := c.armWrite(); err != nil {
			return n, err
		}
	}
	m, err := c.Conn.Write(p[n:])
	return n + m, err
}

func (c *limitConn) setWriting(on bool) {
	c.w.mu.Lock()
	c.w.writing = on
	c.w.mu.Unlock()
}

// wantsDeadline reports whether a write deadline is asked for and not
// armed yet.
func (c *limitConn) wantsDeadline() bool {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	return !c.w.armed && !c.w.deadline.IsZero()
}

// armWrite sets the recorded write deadline on the socket.
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
// deadline has passed (the write then fails under it, as it would have),
// the kernel's buffer is full, or the connection is not a socket.
func (c *limitConn) writeNow(p []byte) (int, error) {
	c.w.mu.Lock()
	passed := !c.w.deadline.IsZero() && !time.Now().Before(c.w.deadline)
	c.w.mu.Unlock()
	sc, ok := c.Conn.(syscall.Conn)
	if passed || !ok || len(p) == 0 {
		return 0, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, nil
	}
	var n int
	var werr error
	err = raw.Write(func(fd uintptr) bool {
		for {
			n, werr = writeFD(fd, p)
			if !errors.Is(werr, syscall.EINTR) {
				return true // never wait here: the caller arms the deadline first
			}
		}
	})
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
