package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
)

// The tests of this file run a real daemon in this process with short
// deadlines and small caps, attack its listeners with raw connections and
// check that a real Matrix client keeps working throughout.

// startNetDaemon starts a daemon with the given limits, federation on
// (a self-signed certificate) and an account "alice" to log in with.
func startNetDaemon(t *testing.T, limits netLimits) (d *Daemon, fedAddr string) {
	t.Helper()
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	cfg.File = filepath.Join(cfg.DataDir, "hearth.conf")
	cfg.ClientListen = "127.0.0.1:0"
	cfg.Federation = FederationInternet
	cfg.FederationListen = "127.0.0.1:0"
	cfg.KeyStore = KeyStoreFile
	cfg.LANDiscovery = "off"
	cfg.ServerName = "limits.test"
	cfg.TLSCert, cfg.TLSKey = writeTestCert(t, cfg.DataDir)
	cfg.net = limits
	d, err := Start(cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Stop(ctx)
	})
	if err := d.accounts.Create(context.Background(), "alice", "correct horse", false); err != nil {
		t.Fatal(err)
	}
	d.fed.mu.Lock()
	fedAddr = d.fed.listener.Addr().String()
	d.fed.mu.Unlock()
	return d, fedAddr
}

// writeTestCert writes a self-signed ECDSA certificate for 127.0.0.1.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "limits.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"limits.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// owner logs alice in with mautrix and checks she can sync; a long poll
// longer than every deadline of the test must come back normally.
func owner(t *testing.T, d *Daemon, longPoll time.Duration) *mautrix.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mautrix.NewClient("http://"+d.Addr(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	// A client of its own, so that its connections are new ones.
	c.Client = &http.Client{Transport: &http.Transport{}}
	if _, err := c.Login(ctx, &mautrix.ReqLogin{Type: mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"},
		Password:   "correct horse", StoreCredentials: true}); err != nil {
		t.Fatalf("owner's login under abuse: %v", err)
	}
	first, err := c.FullSyncRequest(ctx, mautrix.ReqSync{})
	if err != nil {
		t.Fatalf("owner's initial sync under abuse: %v", err)
	}
	if longPoll > 0 {
		if _, err := c.FullSyncRequest(ctx, mautrix.ReqSync{Since: first.NextBatch, Timeout: int(longPoll.Milliseconds())}); err != nil {
			t.Fatalf("owner's %s long poll under abuse: %v", longPoll, err)
		}
	}
	c.Client.CloseIdleConnections()
	return c
}

// dialer opens raw connections to one listener, TLS or not.
type dialer struct {
	addr string
	tls  bool
}

func (dl dialer) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", dl.addr)
	if err != nil {
		t.Fatalf("dial %s: %v", dl.addr, err)
	}
	if dl.tls {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake with %s: %v", dl.addr, err)
		}
		return tc
	}
	return c
}

// closedWithin reads c until the server ends it and fails the test if it
// is still open after wait. Anything the server answered before closing
// is skipped.
func closedWithin(c net.Conn, wait time.Duration) error {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("still open after %s", wait)
	}
	return nil // EOF (io.Copy's nil), a reset, a TLS close: closed
}

// stillOpen says whether the server has left c open: a short read
// finds no data and no end.
func stillOpen(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestListenerDeadlines: idle keep-alive connections, headers that never
// end and bodies that never arrive are closed by the server on the client
// and the federation listener, while the owner logs in and a /sync long
// poll longer than every deadline returns normally.
func TestListenerDeadlines(t *testing.T) {
	second := time.Second
	// Caps high enough that only the deadlines close anything here.
	d, fedAddr := startNetDaemon(t, netLimits{header: second, body: second, write: second, idle: second,
		clientConns: 4096, fedPerAddr: 4096})
	const wait = 20 * time.Second // far beyond the 1 s deadlines; today these stay open for good
	listeners := map[string]struct {
		dl         dialer
		get, post  string // a GET any client may make, a path whose handler reads a body
		idleConns  int
		slowConns  int
		headerOnly int
	}{
		"client":     {dialer{d.Addr(), false}, "/_matrix/client/versions", "/_matrix/client/v3/login", 1000, 100, 100},
		"federation": {dialer{fedAddr, true}, "/_matrix/federation/v1/version", "/_matrix/federation/v1/send/1", 30, 15, 15},
	}
	for name, l := range listeners {
		t.Run(name, func(t *testing.T) {
			var conns []net.Conn
			kinds := map[net.Conn]string{}
			add := func(c net.Conn, kind string) { conns = append(conns, c); kinds[c] = kind }
			// Idle keep-alives: one request answered, then nothing.
			for range l.idleConns {
				c := l.dl.dial(t)
				fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", l.get)
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("GET %s: %v %v", l.get, resp, err)
				}
				resp.Body.Close()
				add(c, "idle keep-alive")
			}
			// Slowloris: headers sent, a body that never comes.
			for range l.slowConns {
				c := l.dl.dial(t)
				fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", l.post)
				add(c, "stalled body")
			}
			// Headers that never end.
			for range l.headerOnly {
				c := l.dl.dial(t)
				fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: localhost\r\n", l.get)
				add(c, "unfinished headers")
			}
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			// The owner works while all that is open; the long poll
			// outlasts every deadline.
			owner(t, d, 3*time.Second)
			var wg sync.WaitGroup
			var mu sync.Mutex
			failures := map[string]int{}
			for _, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := closedWithin(c, wait); err != nil {
						mu.Lock()
						failures[kinds[c]]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			for kind, n := range failures {
				t.Errorf("%d connections (%s) still open %s after their deadline", n, kind, wait)
			}
			owner(t, d, 0)
		})
	}
}

// TestFederationPerAddressCap: connections from one address beyond the
// federation listener's cap are closed at once; those within it stay.
func TestFederationPerAddressCap(t *testing.T) {
	const perAddr = 4
	d, fedAddr := startNetDaemon(t, netLimits{header: time.Minute, fedPerAddr: perAddr})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range perAddr {
		c, err := net.Dial("tcp", fedAddr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	for i, c := range held {
		if !stillOpen(c) {
			t.Fatalf("connection %d of %d (within the cap) was closed", i+1, perAddr)
		}
	}
	over, err := net.Dial("tcp", fedAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	// Today's listener would keep it until the TLS handshake times out
	// (10 s); within the cap it would be kept for the configured minute.
	if err := closedWithin(over, 5*time.Second); err != nil {
		t.Fatalf("connection %d from one address: %v", perAddr+1, err)
	}
	// Room again once one of them goes.
	held[0].Close()
	held = held[1:]
	var again net.Conn
	// The close reaches the server asynchronously: retry for a while.
	for give := time.Now().Add(10 * time.Second); again == nil && time.Now().Before(give); {
		c, err := net.Dial("tcp", fedAddr)
		if err != nil {
			t.Fatal(err)
		}
		if stillOpen(c) {
			again = c
			break
		}
		c.Close()
		time.Sleep(50 * time.Millisecond)
	}
	if again == nil {
		t.Fatal("after one connection closed, no new one was admitted")
	}
	held = append(held, again)
	owner(t, d, 0) // the client listener is not affected
}

// TestClientCapShedsIdle: at the client listener's cap, the connections
// idle longest are closed to make room, so the owner's client gets in
// however many idle connections someone opened.
func TestClientCapShedsIdle(t *testing.T) {
	const capacity = 30
	d, _ := startNetDaemon(t, netLimits{clientConns: capacity, idle: time.Hour, header: time.Hour})
	dl := dialer{d.Addr(), false}
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	// Three times the cap of keep-alives, each idle after one request:
	// the cap holds, by closing the oldest.
	for range 3 * capacity {
		c := dl.dial(t)
		fmt.Fprintf(c, "GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("a keep-alive's request was refused (%v %v): the idle longest should have been shed", resp, err)
		}
		resp.Body.Close()
		idle = append(idle, c)
	}
	if err := closedWithin(idle[0], 5*time.Second); err != nil {
		t.Errorf("the oldest idle connection beyond the cap: %v", err)
	}
	if !stillOpen(idle[len(idle)-1]) {
		t.Error("the newest idle connection was closed")
	}
	if ll, ok := d.listener.(*limitListener); !ok {
		t.Error("client listener has no cap")
	} else if open, _ := ll.counts(); open > capacity {
		t.Errorf("%d connections open, cap %d", open, capacity)
	}
	owner(t, d, time.Second)
}

// TestSlowReaderCut: a client that stops reading a large response is cut
// off once the write deadline passes: the response's transfer is bounded,
// not only the handler.
func TestSlowReaderCut(t *testing.T) {
	d, _ := startNetDaemon(t, netLimits{write: time.Second, idle: time.Hour})
	c := owner(t, d, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	up, err := c.UploadBytes(ctx, bytes.Repeat([]byte("hearth "), 16<<20/7), "application/octet-stream")
	if err != nil {
		t.Fatal(err)
	}
	c.Client.CloseIdleConnections()
	ll := d.listener.(*limitListener)
	waitOpen(t, ll, 0, "the owner's client hung up")

	conn := dialer{d.Addr(), false}.dial(t)
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096) // and never read: far less than the file
	fmt.Fprintf(conn, "GET /_matrix/client/v1/media/download/%s/%s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n\r\n",
		up.ContentURI.Homeserver, up.ContentURI.FileID, c.AccessToken)
	waitOpen(t, ll, 1, "the download began")
	waitOpen(t, ll, 0, "the server gave up on a client that stopped reading")
}

// waitOpen waits until the listener has n connections open; it fails the
// test if that takes more than 20 s.
func waitOpen(t *testing.T, ll *limitListener, n int, what string) {
	t.Helper()
	for give := time.Now().Add(20 * time.Second); time.Now().Before(give); time.Sleep(20 * time.Millisecond) {
		if open, _ := ll.counts(); open == n {
			return
		}
	}
	open, _ := ll.counts()
	t.Fatalf("waiting for %s: %d connections open, want %d", what, open, n)
}

// TestSlowHonestUpload: a body that keeps arriving faster than the
// minimum rate is read to the end even when it takes several times the
// body deadline.
func TestSlowHonestUpload(t *testing.T) {
	d, _ := startNetDaemon(t, netLimits{body: 2 * time.Second, minRate: 1 << 10})
	c := owner(t, d, 0)
	const chunks, size = 30, 4 << 10 // 120 KiB at 20 KiB/s: 6 s, three body deadlines
	pr, pw := io.Pipe()
	go func() {
		for range chunks {
			time.Sleep(200 * time.Millisecond)
			if _, err := pw.Write(bytes.Repeat([]byte("s"), size)); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", "http://"+d.Addr()+"/_matrix/media/v3/upload", pr)
	req.ContentLength = chunks * size
	req.Header.Set("Authorization", "Bearer "+c.AccessToken)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Client.Do(req)
	if err != nil {
		t.Fatalf("slow upload: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("slow upload: %d %s", resp.StatusCode, body)
	}
}

// TestFederationHTTP2: the deadlines reach HTTP/2 streams through
// http.ResponseController without breaking them.
func TestFederationHTTP2(t *testing.T) {
	_, fedAddr := startNetDaemon(t, netLimits{body: time.Second, write: time.Second})
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer hc.CloseIdleConnections()
	for range 3 { // one connection, several streams
		resp, err := hc.Get("https://" + fedAddr + "/_matrix/federation/v1/version")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("GET /version over %s: %d %s", resp.Proto, resp.StatusCode, body)
		}
	}
}

// TestClientCapShedsSlowBodies: a cap filled with requests whose bodies
// never come does not lock the owner out: with nothing idle, the
// connection that has been reading its body longest makes room.
func TestClientCapShedsSlowBodies(t *testing.T) {
	const capacity = 30
	d, _ := startNetDaemon(t, netLimits{clientConns: capacity, body: time.Hour, idle: time.Hour, header: time.Hour})
	dl := dialer{d.Addr(), false}
	var slow []net.Conn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	ll := d.listener.(*limitListener)
	stall := func() {
		c := dl.dial(t)
		fmt.Fprintf(c, "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		slow = append(slow, c)
	}
	// One at a time, each waiting until its request reads its body, so
	// the order the listener knows them in is the order they were dialled
	// (concurrent handlers may otherwise start reading in any order).
	for i := range capacity {
		stall()
		for give := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			ll.mu.Lock()
			reading := ll.slow.Len()
			ll.mu.Unlock()
			if reading == i+1 {
				break
			}
			if time.Now().After(give) {
				t.Fatalf("%d of %d stalled requests reached their handler", reading, i+1)
			}
		}
	}
	// Every slot now holds a request waiting for its body, nothing is idle.
	stall()
	if err := closedWithin(slow[0], 10*time.Second); err != nil {
		t.Errorf("the oldest stalled body, one beyond the cap: %v", err)
	}
	for range 10 {
		stall()
	}
	owner(t, d, time.Second)
	if open, _ := ll.counts(); open > capacity {
		t.Errorf("%d connections open, cap %d", open, capacity)
	}
}

// addrConn is a connection that only has a remote address: enough for the
// listener's admission, which looks at nothing else.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// TestPerAddressCapCountsIPv6By64: one host commonly holds a whole IPv6
// /64, so the per-address cap counts the /64 (and an IPv4-mapped address
// as its IPv4 one); otherwise a single host could take the whole
// federation listener by using a fresh address per connection.
func TestPerAddressCapCountsIPv6By64(t *testing.T) {
	l := newLimitListener(nil, "test", 100, 2)
	admit := func(ip string) bool {
		return l.admit(addrConn{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 8448}}) != nil
	}
	if !admit("2001:db8::1") || !admit("2001:db8::2") {
		t.Fatal("the first two connections of a /64 were refused")
	}
	if admit("2001:db8::3") {
		t.Error("a third address of the same /64 went past the per-address cap")
	}
	if !admit("2001:db8:0:1::1") {
		t.Error("another /64 was refused")
	}
	if !admit("192.0.2.1") || !admit("::ffff:192.0.2.1") || admit("192.0.2.1") {
		t.Error("an IPv4 address and its mapped form are not one client")
	}
}
