package turn

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/pion/turn/v4"
)

var testSecret = []byte("a test secret of some length")

// startTest runs a relay on loopback; the local networks are 10.99.0.0/24
// (a LAN this machine does not have: permissions there are granted, and
// nothing is sent).
func startTest(t *testing.T, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{Secret: testSecret, Realm: "hearth.test", Listen: "127.0.0.1:0",
		Scope: Scope{LocalNets: func() []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")} }}}
	if mod != nil {
		mod(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dial makes a pion TURN client of s on its own UDP socket.
func dial(t *testing.T, s *Server, c Credentials) *turn.Client {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", s.Port())
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: pc,
		Username: c.Username, Password: c.Password, Realm: "hearth.test", RTO: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); pc.Close() })
	return cl
}

func creds(user string) Credentials { return Issue(testSecret, user, time.Now(), time.Hour) }

func TestAllocateNeedsValidCredentials(t *testing.T) {
	s := startTest(t, nil)
	if _, err := dial(t, s, creds("@alice:hearth.test")).Allocate(); err != nil {
		t.Fatalf("allocation with good credentials: %v", err)
	}
	expired := Issue(testSecret, "@alice:hearth.test", time.Now().Add(-2*time.Hour), time.Hour)
	wrong := creds("@alice:hearth.test")
	wrong.Password = Password([]byte("another secret"), wrong.Username)
	forged := creds("@alice:hearth.test")
	forged.Username = strings.Replace(forged.Username, "@alice", "@mallory", 1) // the password is alice's
	for name, c := range map[string]Credentials{"expired": expired, "wrong password": wrong, "other user's password": forged} {
		if _, err := dial(t, s, c).Allocate(); err == nil {
			t.Errorf("%s: allocation accepted", name)
		}
	}
	if n := s.Allocations(); n != 1 {
		t.Errorf("%d allocations, want the one with good credentials", n)
	}
	// The auth handler itself (asked for every authenticated request, not
	// only Allocate) gives no key for an expired username.
	src := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	if _, ok := s.auth(expired.Username, "hearth.test", src); ok {
		t.Error("auth handler: expired username accepted")
	}
	if key, ok := s.auth(wrong.Username, "hearth.test", src); !ok || bytes.Equal(key, turn.GenerateAuthKey(wrong.Username, "hearth.test", wrong.Password)) {
		t.Error("auth handler: the key of a wrong password")
	}
}

// rawAllocate sends one Allocate request built by hand and returns the
// error code of the answer (0 for success).
func rawAllocate(t *testing.T, conn net.PacketConn, to net.Addr, attrs ...stun.Setter) int {
	t.Helper()
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}}, attrs...)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return exchange(t, conn, to, m.Raw)
}

func exchange(t *testing.T, conn net.PacketConn, to net.Addr, raw []byte) int {
	t.Helper()
	if _, err := conn.WriteTo(raw, to); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	var res stun.Message
	if err := stun.Decode(buf[:n], &res); err != nil {
		t.Fatal(err)
	}
	if res.Type.Class == stun.ClassSuccessResponse {
		return 0
	}
	var code stun.ErrorCodeAttribute
	if err := code.GetFrom(&res); err != nil {
		t.Fatalf("error response without a code: %v", res)
	}
	if code.Code == stun.CodeUnauthorized || code.Code == stun.CodeStaleNonce {
		var nonce stun.Nonce
		nonce.GetFrom(&res)
		lastNonce = nonce
	}
	return int(code.Code)
}

var lastNonce stun.Nonce

// Requests with a nonce the server did not issue, a MESSAGE-INTEGRITY of
// another key, or bytes changed after signing are refused (RFC 8489 §9.2).
func TestAllocateRefusesBadIntegrityAndNonce(t *testing.T) {
	s := startTest(t, nil)
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.Port()}
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := creds("@alice:hearth.test")
	user, realm := stun.NewUsername(c.Username), stun.NewRealm("hearth.test")
	if code := rawAllocate(t, conn, to); code != int(stun.CodeUnauthorized) {
		t.Fatalf("unauthenticated Allocate: code %d, want 401", code)
	}
	nonce := lastNonce
	good := stun.NewLongTermIntegrity(c.Username, "hearth.test", c.Password)
	if code := rawAllocate(t, conn, to, user, realm, stun.NewNonce("bm90LWEtbm9uY2UtaXNzdWVk"), good, stun.Fingerprint); code != int(stun.CodeStaleNonce) {
		t.Errorf("a nonce never issued: code %d, want 438", code)
	}
	other := stun.NewLongTermIntegrity(c.Username, "hearth.test", "guess")
	if code := rawAllocate(t, conn, to, user, realm, nonce, other, stun.Fingerprint); code == 0 {
		t.Error("MESSAGE-INTEGRITY of the wrong password accepted")
	}
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}, user, realm, nonce, good)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(m.Raw)
	i := bytes.Index(tampered, []byte("@alice"))
	tampered[i+1] = 'b' // @blice: the integrity no longer matches
	if code := exchange(t, conn, to, tampered); code == 0 {
		t.Error("a request changed after signing was accepted")
	}
	if s.Allocations() != 0 {
		t.Fatalf("%d allocations after refused requests", s.Allocations())
	}
	if code := exchange(t, conn, to, m.Raw); code != 0 {
		t.Fatalf("the untouched request: code %d, want success", code)
	}
}

func TestPermissionsOnlyToServedNetworks(t *testing.T) {
	s := startTest(t, nil)
	cl := dial(t, s, creds("@alice:hearth.test"))
	if _, err := cl.Allocate(); err != nil {
		t.Fatal(err)
	}
	if err := cl.CreatePermission(&net.UDPAddr{IP: net.IPv4(10, 99, 0, 5), Port: 5000}); err != nil {
		t.Errorf("permission to a peer on the LAN refused: %v", err)
	}
	for _, peer := range []string{"127.0.0.1", "127.0.0.53", "169.254.169.254", "10.98.0.5", "93.184.216.34", "224.0.0.251"} {
		if err := cl.CreatePermission(&net.UDPAddr{IP: net.ParseIP(peer), Port: 5000}); err == nil {
			t.Errorf("permission to %s granted", peer)
		}
	}
}

// relayPair allocates two relays of s for two users, each permitting the
// other (TURN relays a peer's data only after a permission for it).
func relayPair(t *testing.T, s *Server) (a, b net.PacketConn) {
	t.Helper()
	ca, cb := dial(t, s, creds("@alice:hearth.test")), dial(t, s, creds("@bob:hearth.test"))
	a, err := ca.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	b, err = cb.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	if err := ca.CreatePermission(b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if err := cb.CreatePermission(a.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// Data moves between two relays of this server (relay to relay, the
// common case of two callers behind the same relay) when loopback is an
// allowed network; this machine's other ports stay out of reach.
func TestRelayMovesDataAndKeepsOwnPortsOut(t *testing.T) {
	s := startTest(t, func(c *Config) { c.Scope.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	a, b := relayPair(t, s)
	if err := send(a, b, []byte("hello through the relay")); err != nil {
		t.Fatal(err)
	}
	if err := send(b, a, []byte("and back")); err != nil {
		t.Fatal(err)
	}

	other, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	rc := &relayConn{srv: s, checked: map[netip.Addr]peerVerdict{}}
	if rc.allowed(udpAddrPort(other.LocalAddr())) {
		t.Error("the relay may send to a port of this machine that is no relay")
	}
	if !rc.allowed(udpAddrPort(b.LocalAddr())) {
		t.Error("the relay may not send to another relay of this machine")
	}
}

// send writes msg from one relay to the other, repeating until it arrives
// (the first packets may race the permission), and checks it.
func send(from, to net.PacketConn, msg []byte) error {
	buf := make([]byte, 1500)
	for try := 0; try < 50; try++ {
		if _, err := from.WriteTo(msg, to.LocalAddr()); err != nil {
			return err
		}
		to.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := to.ReadFrom(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(buf[:n], msg) {
			return fmt.Errorf("got %q, want %q", buf[:n], msg)
		}
		return nil
	}
	return fmt.Errorf("%q never arrived", msg)
}

func TestAllocationQuotas(t *testing.T) {
	s := startTest(t, func(c *Config) { c.UserQuota, c.TotalQuota = 2, 3 })
	alice := creds("@alice:hearth.test")
	first, err := dial(t, s, alice).Allocate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, s, alice).Allocate(); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, s, alice).Allocate(); err == nil {
		t.Fatal("a third allocation for alice (quota 2) accepted")
	}
	bob := creds("@bob:hearth.test")
	if _, err := dial(t, s, bob).Allocate(); err != nil {
		t.Fatalf("bob's first allocation: %v", err)
	}
	if _, err := dial(t, s, bob).Allocate(); err == nil {
		t.Fatal("a fourth allocation (global quota 3) accepted")
	}
	first.Close() // a Refresh with lifetime 0 deletes it
	for deadline := time.Now().Add(10 * time.Second); s.Allocations() != 2; {
		if time.Now().After(deadline) {
			t.Fatalf("%d allocations after alice closed one", s.Allocations())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := dial(t, s, bob).Allocate(); err != nil {
		t.Fatalf("bob's allocation after alice freed one: %v", err)
	}
}

func TestICEServersForTheAgent(t *testing.T) {
	s := startTest(t, nil)
	ice := s.ICEServers("@echo:hearth.test")
	want := []string{fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", s.Port()), fmt.Sprintf("turn:127.0.0.1:%d?transport=tcp", s.Port())}
	if len(ice) != 1 || strings.Join(ice[0].URLs, " ") != strings.Join(want, " ") ||
		ice[0].Credential != Password(testSecret, ice[0].Username) || !strings.HasSuffix(ice[0].Username, ":@echo:hearth.test") {
		t.Fatalf("ICEServers = %+v", ice)
	}
}

// An allocation over its bandwidth has its packets dropped by the relay
// socket (the bucket is wired into the relay, not only tested alone).
func TestRelayDropsOverBandwidth(t *testing.T) {
	s := startTest(t, func(c *Config) {
		c.Scope.Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.BandwidthBytes = 2000
	})
	a, b := relayPair(t, s)
	pkt := make([]byte, 1000)
	for i := 0; i < 20; i++ {
		if _, err := a.WriteTo(pkt, b.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); s.Dropped() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("20 kB at once through a 2 kB/s allocation: nothing dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close lets go of TCP clients too, not only the listeners.
func TestCloseEndsTCPClients(t *testing.T) {
	s := startTest(t, nil)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: conn.RemoteAddr().String(), TURNServerAddr: conn.RemoteAddr().String(),
		Conn: turn.NewSTUNConn(conn), Username: creds("@a:hearth.test").Username, Password: creds("@a:hearth.test").Password})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SendBindingRequest(); err != nil { // the server has accepted it
		t.Fatal(err)
	}
	s.Close()
	raw, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port()))
	if err == nil {
		raw.Close()
		t.Fatal("the TCP listener still accepts after Close")
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server kept the TCP client's connection open after Close: %v", err)
	}
}
