package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// fakeClock is a settable time for the repeat limiter.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func lines(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// 1000 identical warnings make one line and, once the window ends, one
// summary; distinct messages, other peers and errors all pass; the limiter
// remembers a bounded number of keys.
func TestRepeatLimiter(t *testing.T) {
	var buf bytes.Buffer
	clock := &fakeClock{time.Unix(1_700_000_000, 0)}
	lim := newRepeatLimiter(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), time.Minute, 8, clock.now)
	log := slog.New(lim)

	for i := 0; i < 1000; i++ {
		log.Warn("could not reach server", "destination", "a.example", "err", fmt.Sprintf("attempt %d", i))
	}
	if got := lines(buf.String()); len(got) != 1 || !strings.Contains(got[0], "attempt 0") {
		t.Fatalf("1000 identical warnings logged as %d lines: %q", len(got), got)
	}
	log.Warn("could not reach server", "destination", "b.example") // another peer is news
	log.Info("something else")
	for i := 0; i < 5; i++ {
		log.Error("could not reach server", "destination", "a.example") // errors always pass
	}
	if got := lines(buf.String()); len(got) != 8 {
		t.Fatalf("distinct records and errors: %d lines, want 8:\n%s", len(got), buf.String())
	}
	buf.Reset()
	clock.t = clock.t.Add(time.Minute)
	lim.sweep()
	got := lines(buf.String())
	if len(got) != 1 || !strings.Contains(got[0], "could not reach server (repeated 999 times)") ||
		!strings.Contains(got[0], "destination=a.example") || !strings.Contains(got[0], "level=WARN") {
		t.Fatalf("summary after the window: %q", got)
	}
	// After the window the warning is logged again.
	buf.Reset()
	log.Warn("could not reach server", "destination", "a.example")
	if got := lines(buf.String()); len(got) != 1 {
		t.Fatalf("the warning after its window: %q", got)
	}
	// Bounded: many distinct keys never grow the map past its cap.
	for i := 0; i < 100; i++ {
		log.Warn("peer failed", "origin", fmt.Sprintf("s%d.example", i))
	}
	if n := len(lim.st.entries); n > 8 || lim.st.order.Len() != n {
		t.Fatalf("%d keys remembered (list %d), cap 8", n, lim.st.order.Len())
	}
	// Keys added with With count too.
	buf.Reset()
	for _, dest := range []string{"c.example", "c.example", "d.example"} {
		log.With("destination", dest).Warn("queue stalled")
	}
	if got := lines(buf.String()); len(got) != 2 {
		t.Fatalf("With(destination): %d lines, want 2: %q", len(got), got)
	}
	// net/http's lines name the client's port: a flood of bad TLS
	// connections is still one line and a summary.
	clock.t = clock.t.Add(time.Minute)
	lim.sweep()
	buf.Reset()
	errLog := slog.NewLogLogger(lim, slog.LevelWarn) // as the listeners' ErrorLog
	for port := 40000; port < 40500; port++ {
		errLog.Printf("http: TLS handshake error from 203.0.113.7:%d: EOF", port)
	}
	clock.t = clock.t.Add(time.Minute)
	lim.sweep()
	got = lines(buf.String())
	if len(got) != 2 || !strings.Contains(got[0], "203.0.113.7:40000") || !strings.Contains(got[1], "http: TLS handshake error (repeated 499 times)") {
		t.Fatalf("500 TLS handshake errors: %d lines: %q", len(got), got)
	}
}

// gomatrixserverlib's logrus output follows log_level and lands in the
// daemon's slog handler (the log ring and the log file) with its fields.
func TestLogrusIntoSlog(t *testing.T) {
	prev := slog.Default()
	std := logrus.StandardLogger()
	t.Cleanup(func() {
		slog.SetDefault(prev)
		std.SetOutput(os.Stderr)
		std.SetFormatter(new(logrus.TextFormatter))
		std.ReplaceHooks(logrus.LevelHooks{})
		std.SetLevel(logrus.InfoLevel)
	})
	var stderr bytes.Buffer
	file := filepath.Join(t.TempDir(), "logs", "hearth.log")
	logs, stop, err := SetupLogging(Config{LogLevel: "info", LogFile: file}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	// What matrix-org/util.GetLogger returns for a context without a logger.
	std.WithField("server_name", "peer.example").WithError(errors.New("connection refused")).Warn("failed to fetch keys")
	std.WithField("server_name", "peer.example").Debug("a debug line")
	stop()

	tail := strings.Join(logs.Tail(10), "\n")
	for _, want := range []string{"level=WARN", `msg="failed to fetch keys"`, "server_name=peer.example", `error="connection refused"`} {
		if !strings.Contains(tail, want) {
			t.Errorf("log ring lacks %s:\n%s", want, tail)
		}
	}
	if strings.Contains(tail, "a debug line") {
		t.Errorf("a logrus debug line was logged at log_level=info:\n%s", tail)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), "failed to fetch keys") {
		t.Fatalf("log file: %v %q", err, b)
	}
	if stderr.Len() != 0 {
		t.Errorf("with log_file set, stderr got %q", stderr.String())
	}
}

// Writing past the size rotates: file, file.1 … file.<keep>, the oldest
// dropped, every file 0600 (an existing 0644 file is tightened).
func TestLogFileRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hearth.log")
	if err := os.WriteFile(path, []byte("from an older install\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := openRotatingFile(path, 1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("x", 99) + "\n"
	for i := 0; i < 45; i++ {
		if _, err := io.WriteString(f, line); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.WriteString(f, "last\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, name := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 1000 {
			t.Errorf("%s is %d bytes, over 1000", name, st.Size())
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a third old file was kept: %v", err)
	}
	if b, _ := os.ReadFile(path); !strings.HasSuffix(string(b), "last\n") {
		t.Errorf("the current file does not end with the last line: %q", b)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestLogRingWhenOutputFails: a line the log's output cannot take (a full
// disk under log_file, a closed stderr) still reaches the ring the console
// shows, which is where the owner looks when something is wrong.
func TestLogRingWhenOutputFails(t *testing.T) {
	logs, stop, err := SetupLogging(Config{LogLevel: "info"}, failingWriter{})
	if err != nil {
		t.Fatal(err)
	}
	slog.Warn("the disk is full")
	stop()
	if tail := strings.Join(logs.Tail(10), "\n"); !strings.Contains(tail, "the disk is full") {
		t.Fatalf("the ring missed the line its output refused: %q", tail)
	}
}

// A burst that stopped is summarised when its window ends, though nothing
// else is logged: a timer armed only while a swallowed record waits (an
// idle daemon has none), not a periodic sweep.
func TestRepeatSummaryWithoutNextRecord(t *testing.T) {
	ring := NewLogRing(10)
	lim := newRepeatLimiter(slog.NewTextHandler(ring, nil), 50*time.Millisecond, 8, time.Now)
	armed := func() bool {
		lim.st.mu.Lock()
		defer lim.st.mu.Unlock()
		return lim.st.timer != nil
	}
	log := slog.New(lim)
	log.Warn("peer unreachable", "destination", "a.example")
	if armed() {
		t.Fatal("a timer is armed with nothing swallowed")
	}
	log.Warn("peer unreachable", "destination", "a.example")
	if !armed() {
		t.Fatal("no timer armed for the swallowed record's summary")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if tail := strings.Join(ring.Tail(10), "\n"); strings.Contains(tail, "peer unreachable (repeated 1 time)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no summary after the window ended: %q", ring.Tail(10))
		}
	}
	if armed() {
		t.Error("the timer is still armed with nothing left to summarise")
	}
}
