package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/daemon"
)

// testConfig is a daemon configuration for these tests: its own data dir
// and config file, a free loopback port, keys in a file (never the
// developer's keyring), and nothing on this machine's networks
// (federation and LAN discovery off; a test that needs discovery turns it
// on for loopback only).
func testConfig(t *testing.T) daemon.Config {
	cfg := daemon.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.File = filepath.Join(cfg.DataDir, "hearth.conf")
	cfg.ClientListen = "127.0.0.1:0"
	cfg.KeyStore = daemon.KeyStoreFile
	cfg.Federation = daemon.FederationOff
	cfg.LANDiscovery = "off"
	return cfg
}

// startDaemon starts a daemon on cfg in this process; stop ends it.
func startDaemon(t *testing.T, cfg daemon.Config) (d *daemon.Daemon, stop func()) {
	t.Helper()
	d, err := daemon.Start(cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Stop(ctx)
	}
}
