package daemon

import (
	"context"
	"errors"
	"testing"

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
