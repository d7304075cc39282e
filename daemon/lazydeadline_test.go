package daemon

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// acceptedPair returns the server side (as the listener's *limitConn) and
// the client side of one loopback connection.
func acceptedPair(t *testing.T) (*limitConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(ln, "test", 4, 0)
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c := <-accepted
	if c == nil {
		t.FailNow()
	}
	t.Cleanup(func() { c.Close() })
	return c.(*limitConn), client
}

// TestWriteDeadlineOnlyWhenWaiting: a response the socket takes at once
// leaves no deadline (so no runtime timer) on the socket, which is what
// woke an idle daemon 30 s after its last request; a client that stops
// reading is still cut off at the deadline.
func TestWriteDeadlineOnlyWhenWaiting(t *testing.T) {
	lc, client := acceptedPair(t)

	// A small write under a deadline that then passes: the socket itself
	// never had it, so a later write straight to the socket goes through.
	// (Before, the deadline was set on the socket and that write failed.)
	deadline := time.Now().Add(50 * time.Millisecond)
	if err := lc.SetWriteDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	if n, err := lc.Write([]byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	for time.Now().Before(deadline.Add(10 * time.Millisecond)) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := lc.Conn.Write([]byte("!")); err != nil {
		t.Fatalf("the socket kept the write deadline of a write that did not wait: %v", err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "hello!" {
		t.Fatalf("client read %q, %v", buf, err)
	}

	// Through the wrapper, the passed deadline still holds.
	if _, err := lc.Write([]byte("late")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write after the deadline: %v, want deadline exceeded", err)
	}

	// A client that stops reading: the writes fill the socket's buffers,
	// the deadline is armed, and the write fails when it passes.
	if err := lc.SetWriteDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		_, err = lc.Write(chunk)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writing to a client that does not read: %v, want deadline exceeded", err)
	}
	if !lc.w.armed {
		t.Fatal("a write that waited left the deadline unarmed")
	}
	if err := lc.SetWriteDeadline(time.Time{}); err != nil || lc.w.armed {
		t.Fatalf("clearing the deadline: %v, armed %v", err, lc.w.armed)
	}
}

// TestWriteDeadlineSetDuringABlockedWrite: a write that began with no
// deadline and blocks on a client that does not read is cut off by a
// deadline another goroutine sets meanwhile, as net.Conn promises (the
// server's shutdown does this). Before, the deadline was only recorded.
func TestWriteDeadlineSetDuringABlockedWrite(t *testing.T) {
	lc, _ := acceptedPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := lc.Write(make([]byte, 64<<20)) // far more than the socket's buffers
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // the write is blocked by now
	if err := lc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("blocked write: %v, want deadline exceeded", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a deadline set during a blocked write did not end it")
	}
}

// drainedConn is an accepted connection whose peer reads everything, with
// a write deadline an hour away.
func drainedConn(t *testing.T) *limitConn {
	lc, client := acceptedPair(t)
	go io.Copy(io.Discard, client)
	if err := lc.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return lc
}

// TestWriteNowAllocatesNothing: the try without waiting, which every
// response makes, reuses the connection's RawConn and callback instead of
// making them per write, and arms nothing.
func TestWriteNowAllocatesNothing(t *testing.T) {
	lc := drainedConn(t)
	msg := []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	allocs := testing.AllocsPerRun(100, func() {
		if n, err := lc.Write(msg); n != len(msg) || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("a write the socket took at once allocated %v times", allocs)
	}
	if lc.w.armed {
		t.Error("writes the socket took at once armed the deadline")
	}
}

// TestWriteOnClosedConnReportsNothingWritten (review): a Write whose try
// without waiting never reaches the socket (closed meanwhile, so
// RawConn.Write fails before calling back) must not report the bytes of
// the previous write as written (io.Writer: 0 <= n <= len(p)).
func TestWriteOnClosedConnReportsNothingWritten(t *testing.T) {
	lc := drainedConn(t)
	big := make([]byte, 1000)
	if n, err := lc.Write(big); n != len(big) || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	lc.Conn.Close() // as the listener's cap or a server Close would, from another goroutine
	n, err := lc.Write([]byte("x"))
	if err == nil {
		t.Fatal("a write on a closed connection succeeded")
	}
	if n != 0 {
		t.Fatalf("a write on a closed connection reported %d bytes of a 1-byte write written", n)
	}
}
