package daemon

import (
	"net"
	"testing"
)

// TestCallsConfig: the call agent's keys are checked by Validate; the
// defaults pass.
func TestCallsConfig(t *testing.T) {
	ok := Defaults()
	ok.DataDir = t.TempDir()
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.VoicemailAfter = 0 },
		func(c *Config) { c.VoicemailAfter = 601 },
		func(c *Config) { c.VoicemailMax = 4 },
	} {
		c := ok
		bad(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
}

// TestCallHostIP: the agent offers loopback always, the machine's other
// addresses only while federation is on (it serves those networks then).
func TestCallHostIP(t *testing.T) {
	lan := net.ParseIP("192.168.1.20")
	off := &Daemon{cfg: Config{Federation: FederationOff}}
	on := &Daemon{cfg: Config{Federation: FederationLAN}}
	if !off.callHostIP(net.ParseIP("127.0.0.1")) || off.callHostIP(lan) {
		t.Error("federation off: want loopback only")
	}
	if !on.callHostIP(lan) || on.callHostIP(net.ParseIP("fe80::1")) {
		t.Error("federation lan: want the LAN address, not link-local")
	}
}
