package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v4"

	hturn "github.com/hearth-chat/hearth/calls/turn"
	"github.com/hearth-chat/hearth/internal/netns"
)

// TestTURNRelayBetweenSeparatedHosts (issue 12): two hosts on two LANs
// that share only the daemon's machine (it has a leg in each and forwards
// nothing) get TURN credentials from a default `hearth run`'s
// /voip/turnServer, each from its own side, allocate relays with them
// (one over UDP, one over TCP), and move data through the relay both
// ways. Each is told the daemon's address on its own LAN. Permissions
// to loopback, link-local or public peers, credentials with a wrong
// password, and expired ones are refused.
func TestTURNRelayBetweenSeparatedHosts(t *testing.T) {
	t.Parallel()
	lanA := NewLAN(t)
	lb, err := netns.NewSubnet("10.48.0.")
	noErr(t, err, "second LAN")
	t.Cleanup(lb.Close)
	lanB := &LAN{LAN: lb, t: t}
	mid := lanA.AddHost("hearth-box")
	leg, err := lanB.AddLeg(mid.Host)
	noErr(t, err, "leg of the middle host in LAN B")
	a, b := lanA.AddHost("anna-phone"), lanB.AddHost("bea-phone")
	if _, err := a.DialContext(t.Context(), "udp", b.IP+":9"); err == nil {
		t.Fatal("a has a route to b: the test proves nothing")
	}

	// A default daemon, but for the client API on every address so that
	// the phones on the two LANs reach it.
	d := mid.Daemon("--client-listen", "0.0.0.0:8008")
	d.Start()
	owner, password := Owner(t, d)

	ca := turnCredentials(t, a, "http://"+mid.IP+":8008", owner, password)
	cb := turnCredentials(t, b, "http://"+leg+":8008", owner, password)
	for _, c := range []struct {
		got  turnServer
		host string
	}{{ca, mid.IP}, {cb, leg}} {
		want := []string{"turn:" + c.host + ":3478?transport=udp", "turn:" + c.host + ":3478?transport=tcp"}
		if strings.Join(c.got.URIs, " ") != strings.Join(want, " ") || c.got.TTL != 86400 ||
			!strings.HasSuffix(c.got.Username, ":"+owner) {
			t.Fatalf("turnServer = %+v; want uris %v, ttl 86400, a username for %s", c.got, want, owner)
		}
	}

	relayA := allocate(t, a, ca.URIs[0], ca.Username, ca.Password)
	relayB := allocate(t, b, cb.URIs[1], cb.Username, cb.Password) // over TCP
	if relayA.err != nil || relayB.err != nil {
		t.Fatalf("allocations: a %v, b %v", relayA.err, relayB.err)
	}
	noErr(t, relayA.client.CreatePermission(relayB.conn.LocalAddr()), "a permits b's relay")
	noErr(t, relayB.client.CreatePermission(relayA.conn.LocalAddr()), "b permits a's relay")
	payload := bytes.Repeat([]byte("hearth relays this; "), 50) // 1000 bytes
	noErr(t, relayExchange(relayA.conn, relayB.conn, payload), "a to b through the relay")
	noErr(t, relayExchange(relayB.conn, relayA.conn, []byte("b answers")), "b to a through the relay")

	// The relay reaches no further than the LANs it serves: not the
	// daemon's loopback (its client API), not the internet.
	for _, peer := range []string{"127.0.0.1:8008", "169.254.169.254:80", "93.184.216.34:443"} {
		p, _ := net.ResolveUDPAddr("udp", peer)
		if err := relayA.client.CreatePermission(p); err == nil {
			t.Errorf("the relay granted a permission to %s", peer)
		}
	}

	// Refused: a wrong password, and expired credentials correctly signed
	// with the daemon's secret (read from its 0600 file: there is no
	// keyring in the namespace).
	wrong := allocate(t, a, ca.URIs[0], ca.Username, base64.StdEncoding.EncodeToString([]byte("not the password....")))
	if wrong.err == nil {
		t.Error("allocation with a wrong password accepted")
	}
	raw, err := os.ReadFile(filepath.Join(d.DataDir, "turn_secret"))
	noErr(t, err, "read the TURN secret")
	secret, err := base64.RawStdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	noErr(t, err, "decode the TURN secret")
	if c := hturn.Issue(secret, owner, time.Now(), time.Hour); c.Password != hturn.Password(secret, c.Username) ||
		allocate(t, a, ca.URIs[0], c.Username, c.Password).err != nil {
		t.Fatal("fresh credentials made with the stored secret are refused: the expiry check below proves nothing")
	}
	expired := hturn.Issue(secret, owner, time.Now().Add(-2*time.Hour), time.Hour)
	if allocate(t, a, ca.URIs[0], expired.Username, expired.Password).err == nil {
		t.Error("allocation with expired credentials accepted")
	}
}

type turnServer struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	URIs     []string `json:"uris"`
	TTL      int64    `json:"ttl"`
}

// turnCredentials logs in as user from host h and asks /voip/turnServer.
func turnCredentials(t *testing.T, h *Host, base, user, password string) turnServer {
	t.Helper()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: h.DialContext}}
	body, _ := json.Marshal(map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}})
	res, err := hc.Post(base+"/_matrix/client/v3/login", "application/json", bytes.NewReader(body))
	noErr(t, err, "login from %s", h.NS)
	var login struct {
		AccessToken string `json:"access_token"`
	}
	err = json.NewDecoder(res.Body).Decode(&login)
	res.Body.Close()
	if err != nil || login.AccessToken == "" {
		t.Fatalf("login from %s: %d %v", h.NS, res.StatusCode, err)
	}
	req, _ := http.NewRequest("GET", base+"/_matrix/client/v3/voip/turnServer", nil)
	req.Header.Set("Authorization", "Bearer "+login.AccessToken)
	res, err = hc.Do(req)
	noErr(t, err, "turnServer from %s", h.NS)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var ts turnServer
	if res.StatusCode != 200 || json.Unmarshal(raw, &ts) != nil {
		t.Fatalf("turnServer from %s: %d %s", h.NS, res.StatusCode, raw)
	}
	return ts
}

type relay struct {
	client *turn.Client
	conn   net.PacketConn
	err    error
}

// allocate runs a pion TURN client in host h against uri
// (turn:HOST:PORT?transport=udp|tcp) and allocates a relay.
func allocate(t *testing.T, h *Host, uri, user, password string) relay {
	t.Helper()
	rest, _ := strings.CutPrefix(uri, "turn:")
	addr, transport, _ := strings.Cut(rest, "?transport=")
	var pc net.PacketConn
	err := h.Do(func() error {
		if transport == "tcp" {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				return err
			}
			pc = turn.NewSTUNConn(c)
			return nil
		}
		var err error
		pc, err = net.ListenPacket("udp4", "0.0.0.0:0")
		return err
	})
	noErr(t, err, "socket in %s for %s", h.NS, uri)
	cl, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: pc,
		Username: user, Password: password, RTO: 200 * time.Millisecond})
	noErr(t, err, "TURN client")
	noErr(t, cl.Listen(), "TURN client listen")
	t.Cleanup(func() { cl.Close(); pc.Close() })
	conn, err := cl.Allocate()
	if err == nil {
		t.Cleanup(func() { conn.Close() })
	}
	return relay{client: cl, conn: conn, err: err}
}

// relayExchange sends msg from one relay to the other until it arrives
// and checks it.
func relayExchange(from, to net.PacketConn, msg []byte) error {
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
			return fmt.Errorf("got %d bytes %.40q…, want %d", n, buf[:n], len(msg))
		}
		return nil
	}
	return fmt.Errorf("%d bytes never arrived", len(msg))
}
