package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
)

// modeDaemon starts a daemon from a config file holding conf (and a data
// dir, key store and loopback addresses) and returns it with a control
// client, the config file and a stop function (which the test's cleanup
// also calls).
func modeDaemon(t *testing.T, dir, conf string) (*Daemon, *controlclient.Client, string, func()) {
	t.Helper()
	file := filepath.Join(dir, "hearth.conf")
	if conf != "" {
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := freshConfig(t, dir)
	d, err := Start(cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { d.Stop(context.Background()) }) }
	t.Cleanup(stop)
	cfg.ClientListen = d.Addr()
	ep, err := Control(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, controlclient.New(ep.Addr, ep.Socket, ep.Secret), file, stop
}

// TestFederationModeSwitchesLive: the control API switches a running
// federation between lan and off in place (the listener closes and
// reopens on the same certificate), writes the mode to the config file,
// and refuses internet without a CA certificate, leaving the file and the
// listener as they were.
func TestFederationModeSwitchesLive(t *testing.T) {
	d, c, file, _ := modeDaemon(t, t.TempDir(), "federation = lan\nfederation_listen = 127.0.0.1:0\n")
	ctx := context.Background()
	st, err := c.Federation(ctx)
	if err != nil || st.Mode != FederationLAN || !st.Enabled || st.RestartRequired || st.CertificateSHA256 == "" {
		t.Fatalf("status at start: %+v %v", st, err)
	}
	addr := d.fed.listener.Addr().String()
	before := fetchFedVersion(t, addr, d.cfg.ServerName)

	var ce *control.Error
	if _, err := c.SetFederationMode(ctx, FederationInternet); !errors.As(err, &ce) || ce.Status != 400 ||
		!strings.Contains(ce.Message, "tls_cert") {
		t.Fatalf("internet without a certificate: %v", err)
	}
	if _, err := c.SetFederationMode(ctx, "public"); !errors.As(err, &ce) || ce.Status != 400 {
		t.Fatalf("an unknown mode: %v", err)
	}
	if conf, _ := os.ReadFile(file); string(conf) != "federation = lan\nfederation_listen = 127.0.0.1:0\n" {
		t.Fatalf("refused modes changed the config:\n%s", conf)
	}

	st, err = c.SetFederationMode(ctx, FederationOff)
	if err != nil || st.Mode != FederationOff || st.Enabled || st.RestartRequired {
		t.Fatalf("switch off: %+v %v", st, err)
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatal("the federation listener still accepts after switching off")
	}
	if s, _ := c.Status(ctx); s.Federation || s.FederationMode != FederationOff {
		t.Fatalf("status after switching off: federation %v, mode %q", s.Federation, s.FederationMode)
	}
	if conf, _ := os.ReadFile(file); !strings.Contains(string(conf), "federation = off\n") {
		t.Fatalf("config after switching off:\n%s", conf)
	}

	st, err = c.SetFederationMode(ctx, FederationLAN)
	if err != nil || st.Mode != FederationLAN || !st.Enabled || st.RestartRequired {
		t.Fatalf("switch back on: %+v %v", st, err)
	}
	after := fetchFedVersion(t, d.fed.listener.Addr().String(), d.cfg.ServerName)
	if !after.Equal(before) {
		t.Error("switching federation off and on changed the certificate")
	}
}

// TestFederationModeNeedsRestartFromOff: a federation that was off at
// start was never built; switching it on is stored and said to need a
// restart, after which it is on.
func TestFederationModeNeedsRestartFromOff(t *testing.T) {
	dir := t.TempDir()
	_, c, _, stop := modeDaemon(t, dir, "federation = off\nfederation_listen = 127.0.0.1:0\n")
	st, err := c.SetFederationMode(context.Background(), FederationLAN)
	if err != nil || st.Mode != FederationOff || st.Configured != FederationLAN || !st.RestartRequired {
		t.Fatalf("switch on while off: %+v %v", st, err)
	}
	stop()
	d, err := Start(freshConfig(t, dir), io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	if d.fed == nil || d.fed.Mode() != FederationLAN {
		t.Fatal("after a restart federation is not on in lan mode")
	}
}
