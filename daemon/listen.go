package daemon

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// This file holds what every listener of the daemon shares against
// connections that cost the daemon without doing anything (issue 10):
// deadlines per request, and caps on open connections (listen_cap.go).
// Idle keep-alives, half-sent headers and trickled bodies otherwise hold a
// goroutine, its buffers and a descriptor for ever, and once the process
// runs out of descriptors accept fails for everyone, the owner's clients
// included.

// netLimits are the deadlines and caps of the listeners. The zero value
// means the defaults (defaultNetLimits); tests set short ones through
// Config.net.
type netLimits struct {
	// header bounds reading a request's headers (and the TLS handshake).
	header time.Duration
	// body bounds reading a request body: it must keep arriving (no pause
	// of body or longer) and arrive within body plus one second per
	// minRate bytes, so that a large upload over a slow but honest link
	// keeps going while a stall or a trickle is cut off.
	body time.Duration
	// write bounds sending a response the same way, from its first byte:
	// time a handler spends thinking (a /sync long poll, a remote join)
	// is not counted, a client that stops reading is.
	write time.Duration
	// minRate is the slowest transfer, in bytes per second, that keeps
	// extending the body and write deadlines.
	minRate int64
	// idle closes a keep-alive connection with no request for this long.
	idle time.Duration
	// clientConns caps open connections to the client listener; fedConns
	// and fedPerAddr cap the federation listener's in total and per
	// remote address. Zero means derived from the descriptor limit.
	clientConns, fedConns, fedPerAddr int
}

// defaultNetLimits: 10 s for headers as before; 30 s for a body or a
// response to start flowing, then at least 4 KiB/s (a 100 MB upload may
// take seven hours); idle keep-alives closed after 90 s (browsers and
// Matrix clients reconnect without a sound).
func defaultNetLimits() netLimits {
	return netLimits{header: 10 * time.Second, body: 30 * time.Second, write: 30 * time.Second,
		minRate: 4 << 10, idle: 90 * time.Second}
}

// withDefaults fills zero fields from the defaults and the caps from the
// process's descriptor limit.
func (n netLimits) withDefaults(nofile int) netLimits {
	d := defaultNetLimits()
	for _, p := range []struct{ v, def *time.Duration }{{&n.header, &d.header}, {&n.body, &d.body},
		{&n.write, &d.write}, {&n.idle, &d.idle}} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	if n.minRate <= 0 {
		n.minRate = d.minRate
	}
	client, fed, perAddr := connBudget(nofile)
	if n.clientConns <= 0 {
		n.clientConns = client
	}
	if n.fedConns <= 0 {
		n.fedConns = fed
	}
	if n.fedPerAddr <= 0 {
		n.fedPerAddr = perAddr
	}
	return n
}

// connBudget splits the descriptor limit: at most half for the client
// listener and a quarter for the federation listener, so that neither
// can starve the other nor the store, media files and outbound
// federation of the rest. Absolute ceilings keep memory bounded where the
// limit is huge (an idle HTTP/1 connection costs about 20 KiB): one
// person's clients need a few dozen connections, a server that shares
// rooms with us a handful.
func connBudget(nofile int) (client, fed, perAddr int) {
	if nofile <= 0 {
		nofile = 8192
	}
	return max(min(nofile/2, 1024), 16), max(min(nofile/4, 1024), 8), 64
}

// server builds an http.Server for h with the header and idle deadlines,
// the per-request body and write deadlines, and, if ln is not nil, the
// hooks through which ln learns which connections it may shed.
func (n netLimits) server(h http.Handler, ln *limitListener) *http.Server {
	s := &http.Server{Handler: n.handler(h), ReadHeaderTimeout: n.header, IdleTimeout: n.idle,
		ErrorLog: log.New(serverLog{}, "", 0)}
	if ln != nil {
		s.ConnState = ln.connState
		s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			if lc := asLimitConn(c); lc != nil {
				return context.WithValue(ctx, limitConnKey{}, lc)
			}
			return ctx
		}
	}
	return s
}

// limitConnKey carries a request's *limitConn in its context, so the
// deadline middleware can tell the listener while a body is being read.
type limitConnKey struct{}

// serverLog carries http.Server's own messages into slog: failed TLS
// handshakes at debug, since every port scan and every connection a cap
// closed makes one, the rest (accept errors, a handler's panic) at warn.
type serverLog struct{}

func (serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	slog.Log(context.Background(), level, msg)
	return len(p), nil
}

// handler applies the body and write deadlines to every request through
// http.ResponseController, which reaches the connection (HTTP/1) or the
// stream (HTTP/2). A request without a body gets no read deadline: the
// server's own reads while a handler runs only watch for the client going
// away, and a deadline there would cancel a long /sync.
func (n netLimits) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		theIdleGC.touch() // the GC back on before the request allocates (runtime.go)
		rc := http.NewResponseController(w)
		if r.Body != nil && r.Body != http.NoBody {
			// A keep-alive connection keeps the previous response's write
			// deadline, which may have passed by now; the server writes
			// nothing before the response (whose writes set their own)
			// but the 100 Continue a body read may send.
			rc.SetWriteDeadline(time.Time{})
			b := &deadlineBody{ReadCloser: r.Body, rc: rc, limits: n, start: time.Now()}
			if lc, ok := r.Context().Value(limitConnKey{}).(*limitConn); ok {
				b.conn = lc
				lc.l.bodyStarted(lc)
				defer b.finished()
			}
			b.extend(0)
			r.Body = b
		}
		dw := &deadlineWriter{ResponseWriter: w, rc: rc, limits: n}
		h.ServeHTTP(dw, r)
		if !dw.armed {
			// Nothing written yet: the server writes the response after
			// this returns, under this deadline.
			rc.SetWriteDeadline(time.Now().Add(n.write))
		}
	})
}

// transferDeadline is when a transfer that started at start and has
// moved n bytes must have moved its next ones: no later than base from
// now (it has stalled) and than start + base + n/minRate (it trickles).
// The second alone would not do for responses: bytes handed to the
// kernel count as moved, and its buffers hold megabytes for a client
// that stopped reading.
func (n netLimits) transferDeadline(start time.Time, base time.Duration, bytes int64) time.Time {
	trickle := start.Add(base + time.Duration(bytes)*time.Second/time.Duration(n.minRate))
	stall := time.Now().Add(base)
	if stall.Before(trickle) {
		return stall
	}
	return trickle
}

// deadlineBody moves the read deadline on as the body arrives and drops
// it once the body has been read to the end.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	limits netLimits
	conn   *limitConn // told when the body is done, if the listener is capped
	start  time.Time
	read   int64
	done   bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.read += int64(n)
	switch {
	case b.done:
	case errors.Is(err, io.EOF):
		b.finished()
		b.rc.SetReadDeadline(time.Time{})
	case n > 0:
		b.extend(b.read)
	}
	return n, err
}

// finished marks the body read (or abandoned by the handler); once.
func (b *deadlineBody) finished() {
	if b.done {
		return
	}
	b.done = true
	if b.conn != nil {
		b.conn.l.bodyEnded(b.conn)
	}
}

func (b *deadlineBody) extend(read int64) {
	b.rc.SetReadDeadline(b.limits.transferDeadline(b.start, b.limits.body, read))
}

// deadlineWriter sets the write deadline before the response's first
// byte goes out and moves it on as the response is written. The response
// starts at its header, but net/http writes a header (other than a 1xx)
// only with the first bytes of the body, or once the handler returns: so
// the deadline is set there, once per write, not also at WriteHeader (a
// long poll's response is a header and one write; each deadline is a
// change to the runtime's timers). (It hides net/http's unexported hook
// through which http.MaxBytesReader marks an oversized body's connection
// for closing; the server then discards at most 256 KiB of the rest,
// under the read deadline, before closing it anyway.)
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	limits  netLimits
	start   time.Time // the response's header
	armed   bool      // a write deadline is set for this response
	written int64
}

func (w *deadlineWriter) begin() {
	if w.start.IsZero() {
		w.start = time.Now()
	}
}

// arm sets the write deadline for the response's next n bytes.
func (w *deadlineWriter) arm(n int64) {
	w.begin()
	w.rc.SetWriteDeadline(w.limits.transferDeadline(w.start, w.limits.write, w.written+n))
	w.armed = true
}

func (w *deadlineWriter) WriteHeader(code int) {
	w.begin()
	if code < http.StatusOK {
		w.arm(0) // an informational header goes out at once
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.arm(int64(len(p)))
	n, err := w.ResponseWriter.Write(p)
	w.written += int64(n)
	return n, err
}

// FlushError sends what is buffered, under a deadline (what
// http.ResponseController.Flush calls).
func (w *deadlineWriter) FlushError() error {
	w.arm(0)
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// ReadFrom keeps net/http's own ReadFrom in the path of a file response
// (http.ServeContent copies into the writer), which hands the file to the
// connection's ReadFrom: sendfile(2) on a plain TCP listener instead of a
// copy through user space. It goes a chunk at a time so the write
// deadline still moves on with what has been sent. ServeContent's reader
// is an io.LimitedReader over the file; the chunks are made over the file
// itself, since the kernel path unwraps only one LimitedReader.
func (w *deadlineWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{w}, src)
	}
	const chunk = 1 << 20
	outer, _ := src.(*io.LimitedReader)
	var total int64
	for {
		part := &io.LimitedReader{R: src, N: chunk}
		if outer != nil {
			part = &io.LimitedReader{R: outer.R, N: min(chunk, outer.N)}
		}
		want := part.N
		w.arm(want)
		n, err := rf.ReadFrom(part)
		if outer != nil {
			outer.N -= n
		}
		w.written += n
		total += n
		if err != nil || n < want || (outer != nil && outer.N <= 0) {
			return total, err
		}
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
