package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-chat/hearth/daemon"
	"github.com/hearth-chat/hearth/localapi/controlclient"
)

// TestAccountNearbyCommand: 'hearth account nearby NAME on|off' switches
// whether an account is announced to people nearby, on a stopped daemon's
// data and through a running daemon's control API; an unknown account is
// an error, a missing on|off a usage error.
func TestAccountNearbyCommand(t *testing.T) {
	cfg := testConfig(t)
	_, stop := startDaemon(t, cfg)
	stop() // the first start makes the owner, opted in
	flags := []string{"--data-dir", cfg.DataDir, "--key-store", "file"}
	run := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := accountCmd(append(args, flags...), &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}
	owners, err := daemon.NearbyAccounts(cfg)
	if err != nil || len(owners) != 1 {
		t.Fatalf("after the first start: %v %v, want the owner alone", owners, err)
	}
	owner := owners[0]
	lp, domain, _ := strings.Cut(owner[1:], ":")
	if code, out := run("add", "zed"); code != 0 {
		t.Fatalf("add zed: %d %s", code, out)
	}
	if code, out := run("nearby", "zed", "on"); code != 0 || !strings.Contains(out, "@zed:"+domain+" can be found") {
		t.Fatalf("nearby zed on (stopped): %d %s", code, out)
	}
	if ids, _ := daemon.NearbyAccounts(cfg); !slices.Equal(slices.Sorted(slices.Values(ids)), slices.Sorted(slices.Values([]string{owner, "@zed:" + domain}))) {
		t.Fatalf("opted in after nearby zed on: %v", ids)
	}
	if code, out := run("nearby", "zed", "maybe"); code != 2 {
		t.Errorf("nearby zed maybe: %d %s, want a usage error", code, out)
	}

	cfg.ClientListen = "127.0.0.1:0"
	d, stop := startDaemon(t, cfg)
	defer stop()
	flags = append(flags, "--client-listen", d.Addr())
	if code, out := run("nearby", lp, "off"); code != 0 || !strings.Contains(out, owner+" is no longer") {
		t.Fatalf("nearby %s off (running): %d %s", lp, code, out)
	}
	if code, out := run("nearby", "nobody", "on"); code != 1 || !strings.Contains(out, "no such user") {
		t.Errorf("nearby nobody on: %d %s", code, out)
	}
	ep, err := daemon.Control(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := controlclient.New(d.Addr(), ep.Socket, ep.Secret)
	ids, err := c.NearbyAccounts(context.Background())
	if err != nil || !slices.Equal(ids, []string{"@zed:" + domain}) {
		t.Fatalf("control API lists %v %v, want zed alone", ids, err)
	}
}
