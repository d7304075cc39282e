package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestPeersForget runs 'hearth peers forget NAME' against a real daemon
// with LAN discovery on: a name with no pin is an error naming it (exit
// 1), no name is a usage error (exit 2).
func TestPeersForget(t *testing.T) {
	cfg := testConfig(t)
	cfg.LANDiscovery = "browse"
	cfg.LANInterfaces = "lo" // discovery runs, but not on this machine's networks
	d, stop := startDaemon(t, cfg)
	t.Cleanup(stop)
	flags := []string{"--data-dir", cfg.DataDir, "--client-listen", d.Addr(), "--key-store", "file"}
	var stdout, stderr bytes.Buffer
	if code := peersCmd(append([]string{"forget", "nobody.local"}, flags...), &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "no pinned key or peer named nobody.local") {
		t.Errorf("forget an unknown name: exit %d, %s%s", code, stdout.String(), stderr.String())
	}
	stderr.Reset()
	if code := peersCmd(append([]string{"forget"}, flags...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage") {
		t.Errorf("forget without a name: exit %d, %s", code, stderr.String())
	}
	// accept and refuse answer a key change; a name not listed with one
	// is an error naming it, no name a usage error.
	for _, verb := range []string{"accept", "refuse"} {
		stderr.Reset()
		if code := peersCmd(append([]string{verb, "nobody.local"}, flags...), &stdout, &stderr); code != 1 ||
			!strings.Contains(stderr.String(), "no peer named nobody.local with a changed key") {
			t.Errorf("%s an unknown name: exit %d, %s", verb, code, stderr.String())
		}
		stderr.Reset()
		if code := peersCmd(append([]string{verb}, flags...), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage") {
			t.Errorf("%s without a name: exit %d, %s", verb, code, stderr.String())
		}
	}
}
