package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// A Start that fails part-way, here on a client port another socket
// holds, stops what it started: the control socket is gone and the store
// file is closed, so the next Start opens it (bbolt's lock would refuse a
// file still held, even by this process).
func TestStartFailureClosesWhatStarted(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.File = filepath.Join(cfg.DataDir, "hearth.conf")
	cfg.ClientListen = taken.Addr().String()
	cfg.KeyStore = KeyStoreFile
	cfg.Federation = FederationOff
	if _, err := Start(cfg, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "client listener") {
		t.Fatalf("Start on a taken port: %v, want the client listener's error", err)
	}
	if c, err := net.Dial("unix", filepath.Join(cfg.DataDir, controlSocket)); err == nil {
		c.Close()
		t.Fatal("the control socket still answers after a failed Start")
	}
	cfg.ClientListen = "127.0.0.1:0"
	d, err := Start(cfg, io.Discard, nil)
	if err != nil {
		t.Fatalf("Start after a failed one: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// Stop's order, which Start's pushes decide: LAN discovery withdrawn
// before the listeners close, long polls ended before the client
// listener waits for requests, the client API's presence timers stopped
// once no client can sync, calls hung up while the store is open, and
// the store last, after every writer.
func TestStopOrder(t *testing.T) {
	d, _ := startTestDaemon(t)
	want := []string{"LAN discovery", "long polls", "idle GC", "client listener", "client API", "control socket",
		"calls", "delayed events", "federation", "TURN", "push", "search", "appservice queue", "client API", "store"}
	if got := d.closers.names(); !slices.Equal(got, want) {
		t.Fatalf("stop order\n got %q\nwant %q", got, want)
	}
}

// The stack runs from the last pushed to the first, runs every clean-up
// even after one fails, returns the first error, and is empty afterwards.
func TestClosersReverse(t *testing.T) {
	var c closers
	var ran []string
	errA, errB := errors.New("a failed"), errors.New("b failed")
	c.push("a", func(context.Context) error { ran = append(ran, "a"); return errA })
	c.push("b", func(context.Context) error { ran = append(ran, "b"); return errB })
	c.pushFunc("c", func() { ran = append(ran, "c") })
	if err := c.close(context.Background()); err != errB {
		t.Fatalf("close: %v, want %v", err, errB)
	}
	if !slices.Equal(ran, []string{"c", "b", "a"}) {
		t.Fatalf("ran %q, want c, b, a", ran)
	}
	if err := c.close(context.Background()); err != nil || len(ran) != 3 {
		t.Fatalf("second close ran again: %v %q", err, ran)
	}
}
