package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/internal/secrets"
	"github.com/hearth-chat/hearth/internal/store"
)

// TestFederationModeRules: a config without the federation key is lan,
// unless it sets federation_listen (a config from before the key: it
// keeps federating with anyone, i.e. internet); internet needs a CA
// certificate; unknown modes and half a certificate are refused.
func TestFederationModeRules(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	file := filepath.Join(dir, "h.conf")
	for _, tc := range []struct {
		name, conf string
		args       []string
		mode, addr string // wanted; empty mode: refused with want in the error
		want       string
	}{
		{"nothing set", "", nil, FederationLAN, ":8448", ""},
		{"legacy federation_listen", "federation_listen = 0.0.0.0:8448\ntls_cert = " + cert + "\ntls_key = " + key + "\n", nil,
			FederationInternet, "0.0.0.0:8448", ""},
		{"legacy listen without certificate", "federation_listen = 0.0.0.0:8448\n", nil, "", "", "tls_cert"},
		{"legacy listen, mode from a flag", "federation_listen = 0.0.0.0:9448\n", []string{"--federation", "lan"},
			FederationLAN, "0.0.0.0:9448", ""},
		{"lan explicit", "federation = lan\n", nil, FederationLAN, ":8448", ""},
		{"off", "federation = off\nfederation_listen = 0.0.0.0:8448\n", nil, FederationOff, "0.0.0.0:8448", ""},
		{"internet without certificate", "federation = internet\n", nil, "", "", "federation = internet needs tls_cert"},
		{"internet with certificate", "federation = internet\ntls_cert = " + cert + "\ntls_key = " + key + "\n", nil,
			FederationInternet, ":8448", ""},
		{"unknown mode", "federation = on\n", nil, "", "", "federation must be off, lan or internet"},
		{"half a certificate", "tls_cert = " + cert + "\n", nil, "", "", "tls_cert and tls_key go together"},
		{"mode from the environment", "", []string{"env"}, FederationOff, ":8448", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(file, []byte(tc.conf), 0o600)
			env := map[string]string{}
			args := tc.args
			if len(args) == 1 && args[0] == "env" {
				env["HEARTH_FEDERATION"], args = "off", nil
			}
			c, err := load(t, append(args, "--data-dir", dir), file, env)
			if tc.mode == "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want it to mention %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Federation != tc.mode || c.fedListenAddr() != tc.addr {
				t.Fatalf("federation %q on %q, want %q on %q", c.Federation, c.fedListenAddr(), tc.mode, tc.addr)
			}
		})
	}
}

// TestLANServerName: the default name of a new install is the machine
// name, six base32 characters of the signing key's hash and .local: a
// valid server name, different for two machines with one host name, the
// same for one key, and short enough for a DNS label however long the
// machine's name.
func TestLANServerName(t *testing.T) {
	pub1, _, _ := ed25519.GenerateKey(nil)
	pub2, _, _ := ed25519.GenerateKey(nil)
	a, b := lanServerName("laptop", pub1), lanServerName("laptop", pub2)
	pattern := regexp.MustCompile(`^laptop-[a-z2-7]{6}\.local$`)
	if !pattern.MatchString(a) || !pattern.MatchString(b) {
		t.Fatalf("names %q, %q do not match %s", a, b, pattern)
	}
	if a == b {
		t.Fatalf("two keys, one host name, one server name %q", a)
	}
	if again := lanServerName("laptop", pub1); again != a {
		t.Fatalf("one key gave %q then %q", a, again)
	}
	long := lanServerName(strings.Repeat("x", 60)+"-y", pub1)
	label, _, _ := strings.Cut(long, ".")
	if len(label) > 63 || strings.Contains(label, "--") {
		t.Fatalf("long machine name gave label %q (%d)", label, len(label))
	}
	for _, n := range []string{a, long, lanServerName(machineServerName(""), pub1)} {
		if err := checkServerName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
}

// TestLocalPrefixes: interface addresses become their networks; a
// prefix wide enough to cover the internet is not a LAN.
func TestLocalPrefixes(t *testing.T) {
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	got := localPrefixes([]net.Addr{cidr("192.168.1.23/24"), cidr("fe80::1/64"), cidr("10.1.2.3/8"),
		cidr("100.64.0.1/0"), cidr("2001:db8::1/16"), &net.IPAddr{IP: net.ParseIP("10.0.0.1")}})
	want := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("fe80::/64"),
		netip.MustParsePrefix("10.0.0.0/8")}
	if len(got) != len(want) {
		t.Fatalf("prefixes %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("prefixes %v, want %v", got, want)
		}
	}
}

// fakeConnListener hands out one end of net.Pipe per Accept, each
// claiming to come from the next of addrs, so Accept's filter is tested
// with remote addresses a test on loopback cannot produce.
type fakeConnListener struct {
	addrs  []string
	remote []net.Conn // the other end, per address
}

func (l *fakeConnListener) Accept() (net.Conn, error) {
	if len(l.addrs) == 0 {
		return nil, net.ErrClosed
	}
	a, b := net.Pipe()
	addr, _ := net.ResolveTCPAddr("tcp", l.addrs[0])
	l.addrs = l.addrs[1:]
	l.remote = append(l.remote, b)
	return addrConn{a, addr}, nil
}
func (l *fakeConnListener) Close() error   { return nil }
func (l *fakeConnListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestLANListenerRefusesOffSubnet: in lan mode a connection from outside
// this machine's networks is closed unanswered and the next one is
// served; loopback, a local network (also as an IPv4-mapped address, or
// link-local with a zone) are admitted; a network joined later is
// admitted once the addresses are read again.
func TestLANListenerRefusesOffSubnet(t *testing.T) {
	nets := []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("fe80::/64")}
	inner := &fakeConnListener{addrs: []string{"203.0.113.9:4000", "192.168.2.7:4000", "192.168.1.50:4000"}}
	ln := newLANListener(inner, func() []netip.Prefix { return nets })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().String(); got != "192.168.1.50:4000" {
		t.Fatalf("accepted %s first; the two off-subnet connections should have been refused", got)
	}
	for i, remote := range inner.remote[:2] {
		remote.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := remote.Read(make([]byte, 1)); err != io.EOF && !strings.Contains(err.Error(), "closed") {
			t.Errorf("refused connection %d: read gave %v, want it closed", i, err)
		}
	}

	for addr, want := range map[string]bool{
		"127.0.0.1:1": true, "[::1]:1": true, "[::ffff:192.168.1.9]:1": true, "[fe80::2%eth0]:1": true,
		"192.168.1.255:1": true, "8.8.8.8:1": false, "[2001:db8::1]:1": false, "192.168.10.1:1": false,
	} {
		a, _ := net.ResolveTCPAddr("tcp", addr)
		if got := ln.admits(a); got != want {
			t.Errorf("admits(%s) = %v, want %v", addr, got, want)
		}
	}

	// The machine joins 10.9.0.0/16: a connection from there is admitted
	// once the addresses are re-read (at most once a second on a miss).
	nets = append(nets, netip.MustParsePrefix("10.9.0.0/16"))
	ln.mu.Lock()
	ln.read = time.Now().Add(-2 * lanNetsReread)
	ln.mu.Unlock()
	if a, _ := net.ResolveTCPAddr("tcp", "10.9.3.4:1"); !ln.admits(a) {
		t.Error("a network joined after the last read is refused")
	}
}

// TestLANListenerServesLoopback: a real lan-mode listener on loopback
// admits a real TLS connection.
func TestLANListenerServesLoopback(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := newLANListener(inner, func() []netip.Prefix { return nil })
	defer ln.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := http.Get("http://" + inner.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body %q", body)
	}
}

// freshConfig is what 'hearth run' builds from a data dir and nothing
// else (the key store is the file: a test never writes to the OS keyring;
// discovery is off: a test never announces on the network).
func freshConfig(t *testing.T, dir string) Config {
	t.Helper()
	cfg, err := load(t, nil, "", map[string]string{"HEARTH_DATA_DIR": dir, "HEARTH_KEY_STORE": "file",
		"HEARTH_LAN_DISCOVERY": "off", "HEARTH_CLIENT_LISTEN": "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestFreshDaemonFederatesOnLAN: a daemon started with no config
// federates in lan mode on its own self-signed certificate, under a
// .local name made from the machine name and its signing key; a restart
// keeps the name and the certificate. (The default address, :8448 on
// every interface, is moved to loopback here: tests do not listen on the
// machine's networks.)
func TestFreshDaemonFederatesOnLAN(t *testing.T) {
	dir := t.TempDir()
	cfg := freshConfig(t, dir)
	if cfg.Federation != FederationLAN || cfg.fedListenAddr() != defaultFederationListen {
		t.Fatalf("fresh config: federation %q on %q, want lan on %s", cfg.Federation, cfg.fedListenAddr(), defaultFederationListen)
	}
	cfg.FederationListen = "127.0.0.1:0"
	start := func() (*Daemon, string) {
		var welcome bytes.Buffer
		d, err := Start(cfg, &welcome, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d, welcome.String()
	}
	d, welcome := start()
	name := d.cfg.ServerName
	machine := machineServerName(mustHostname(t))
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(machine) + `-[a-z2-7]{6}\.local$`).MatchString(name) {
		t.Errorf("server name %q, want %s-xxxxxx.local", name, machine)
	}
	if !strings.Contains(welcome, name) || !strings.Contains(welcome, "--server-name") {
		t.Errorf("the welcome does not name the server and how to choose a public one:\n%s", welcome)
	}
	if d.fed == nil || d.fed.mode != FederationLAN {
		t.Fatalf("federation not on in lan mode: %+v", d.fed)
	}
	spki, ok := d.tlsPublicKey()
	if !ok {
		t.Fatal("no TLS public key for the LAN announcement")
	}
	fedAddr := d.fed.listener.Addr().String()
	leaf := fetchFedVersion(t, fedAddr, name)
	if sha256.Sum256(leaf.RawSubjectPublicKeyInfo) != spki {
		t.Error("the listener's certificate is not the one tlsPublicKey describes")
	}
	if err := leaf.VerifyHostname(name); err != nil {
		t.Errorf("self-signed certificate: %v", err)
	}
	stop(t, d)

	d, welcome = start()
	defer stop(t, d)
	if d.cfg.ServerName != name {
		t.Errorf("after a restart the server is %q, was %q", d.cfg.ServerName, name)
	}
	if again, _ := d.tlsPublicKey(); again != spki {
		t.Error("a restart made another federation certificate")
	}
	if welcome != "" {
		t.Errorf("welcome printed again on restart: %q", welcome)
	}
}

// TestExistingDataDirKeepsItsName: the new default applies to new installs
// only. A data dir that recorded a name keeps it, and one from before
// names were recorded (a signing key, no name in the file) keeps the bare
// machine name it has been signing under.
func TestExistingDataDirKeepsItsName(t *testing.T) {
	recorded := t.TempDir()
	db, err := store.Open(filepath.Join(recorded, dbFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.RecordServerName(context.Background(), "old-box")
	db.Close()

	unrecorded := t.TempDir()
	if _, _, err := secrets.LoadOrCreateSigningKey(secrets.FileStore{Dir: unrecorded}); err != nil {
		t.Fatal(err)
	}
	db, err = store.Open(filepath.Join(unrecorded, dbFile), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	for dir, want := range map[string]string{recorded: "old-box", unrecorded: machineServerName(mustHostname(t))} {
		cfg := freshConfig(t, dir)
		cfg.Federation = FederationOff
		d, err := Start(cfg, io.Discard, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d.cfg.ServerName != want {
			t.Errorf("existing data dir started as %q, want %q", d.cfg.ServerName, want)
		}
		stop(t, d)
	}
}

// fetchFedVersion asks the federation listener for its version over TLS,
// trusting only the certificate it presents (there is no CA), and returns
// that certificate.
func fetchFedVersion(t *testing.T, addr, serverName string) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: serverName, InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error { leaf = cs.PeerCertificates[0]; return nil }}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + addr + "/_matrix/federation/v1/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("federation version: %d", resp.StatusCode)
	}
	return leaf
}

func mustHostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func stop(t *testing.T, d *Daemon) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWipedDataDirWithKeptKey: a data dir whose hearth.db was deleted
// while its signing key stayed (in the OS keyring, which a deleted
// directory does not empty; here the file store) is a new install: it is
// named from that key, so it comes back under the same .local name.
func TestWipedDataDirWithKeptKey(t *testing.T) {
	dir := t.TempDir()
	key, _, err := secrets.LoadOrCreateSigningKey(secrets.FileStore{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cfg := freshConfig(t, dir)
	cfg.Federation = FederationOff
	d, err := Start(cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(t, d)
	want := lanServerName(machineServerName(mustHostname(t)), key.Key.Public().(ed25519.PublicKey))
	if d.cfg.ServerName != want {
		t.Fatalf("server name %q, want %q", d.cfg.ServerName, want)
	}
}

// TestSelfSignedPeerNotTrustedYet: two daemons in lan mode on their own
// self-signed certificates, one routed to the other (federation_servers)
// but not verified by discovery, do not federate: without a certificate
// key bound by a verified announcement outbound TLS checks the system
// roots and ca_file, and a self-signed certificate is in neither. Trust
// in a LAN peer's certificate comes only from the binding to its signing
// key announced over discovery (resolve.TestLANCertPins, the netns e2e
// tests), never from being on the LAN.
func TestSelfSignedPeerNotTrustedYet(t *testing.T) {
	startLAN := func(name, servers string) *Daemon {
		cfg := freshConfig(t, t.TempDir())
		cfg.ServerName, cfg.serverNameDefault = name, false
		cfg.FederationListen, cfg.FederationServers = "127.0.0.1:0", servers
		d, err := Start(cfg, io.Discard, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stop(t, d) })
		return d
	}
	a := startLAN("a.local", "")
	b := startLAN("b.local", "a.local="+a.fed.listener.Addr().String())
	req, err := http.NewRequest(http.MethodGet, "matrix-federation://a.local/_matrix/federation/v1/version", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: b.fed.resolver.Transport(), Timeout: 10 * time.Second}).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("b reached a over a self-signed certificate nothing vouches for")
	}
	if !errors.As(err, new(x509.UnknownAuthorityError)) {
		t.Fatalf("got %v, want a certificate verification error", err)
	}
}
