package daemon

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"github.com/hearth-chat/hearth/discovery"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
)

// TestControlForgetPeer: POST /_hearth/v1/peers/{name}/forget (what
// `hearth peers forget NAME` calls) deletes the pin of a LAN peer's key;
// a name with no pin is 404 not_found and changes nothing.
func TestControlForgetPeer(t *testing.T) {
	d, cfg := startTestDaemon(t)
	if d.lan == nil {
		t.Skip("LAN discovery did not start here (no mDNS socket)")
	}
	ctx := context.Background()
	pinned := func(name string) bool {
		var ok bool
		d.db.View(func(tx *store.Tx) error {
			ok = tx.Get(store.LANPins, []byte(name)) != nil
			return nil
		})
		return ok
	}
	err := d.db.Update(ctx, func(tx *store.Tx) error {
		return tx.Put(store.LANPins, []byte("anna.local"), []byte(`{"key":"ed25519:a:AAAA","pinned_ts":1}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := Control(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := controlclient.New(ep.Addr, ep.Socket, ep.Secret)
	res, err := c.ForgetPeer(ctx, "anna.local")
	if err != nil || !res.Forgotten || res.ServerName != "anna.local" || pinned("anna.local") {
		t.Fatalf("forget: %+v %v, still pinned %v", res, err, pinned("anna.local"))
	}
	var ce *control.Error
	if _, err := c.ForgetPeer(ctx, "anna.local"); !errors.As(err, &ce) || ce.Status != 404 || ce.Code != "not_found" {
		t.Fatalf("forgetting it again: %v", err)
	}
}

// TestLANPeerFoundWakesQueue: when discovery finds a peer (again), the
// outbound queue to it stops backing off and sends at once: events queued
// while it was away are delivered as soon as it is back, not when the
// backoff of the failures meanwhile runs out.
func TestLANPeerFoundWakesQueue(t *testing.T) {
	d, _ := startNetDaemon(t, netLimits{})
	ctx := context.Background()
	// A listener standing in for the peer: it counts connections.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dialled := make(chan time.Time, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			dialled <- time.Now()
			c.Close()
		}
	}()
	// Something is queued for the peer while it is away (no route: the
	// name does not resolve), so the queue backs off.
	if err := d.fed.queue.SendEDU(ctx, []string{"peer.local"}, gomatrixserverlib.EDU{Type: "m.typing", Content: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	var backoffEnd time.Time
	deadline := time.Now().Add(30 * time.Second)
	for backoffEnd.IsZero() {
		for _, dst := range d.fed.queue.Status() {
			if dst.Name == "peer.local" && dst.Failures > 0 && dst.NextTry.After(time.Now()) {
				backoffEnd = dst.NextTry
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue never failed to reach peer.local: %+v", d.fed.queue.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Discovery finds it.
	svc := discovery.New(discovery.Config{ServerName: "limits.test"})
	port := l.Addr().(*net.TCPAddr).Port
	d.routeLANPeer(svc)(discovery.Peer{ServerName: "peer.local", Addrs: []string{"127.0.0.1"}, Port: port, LAN: true, Verified: true}, false)
	select {
	case at := <-dialled:
		if !at.Before(backoffEnd) {
			t.Errorf("the peer was dialled at the end of the backoff, not when it was found")
		}
	case <-time.After(time.Until(backoffEnd)):
		t.Fatalf("the peer was not dialled before the backoff ended (%v)", backoffEnd)
	}
}
