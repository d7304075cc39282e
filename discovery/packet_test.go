package discovery

import (
	"crypto/ed25519"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/hearth-chat/hearth/internal/netmon"
)

// fakeIface is an interface for tests without sockets: index 7 with addr/24.
func fakeIface(addr string) iface {
	return iface{ifi: net.Interface{Index: 7, Name: "t0", Flags: net.FlagUp | net.FlagMulticast},
		addrs: []netip.Prefix{netip.MustParsePrefix(addr + "/24")}}
}

// offline is a started-looking service with no socket: packets it sends
// go to hook, packets for it are given to handlePacket.
func offline(t testing.TB, name, addr string, port int) (*Service, ed25519.PublicKey) {
	t.Helper()
	pub, _, _ := genKey()
	db := openDB(t, filepath.Join(t.TempDir(), "h.db"))
	t.Cleanup(func() { db.Close() })
	s := New(Config{ServerName: name, KeyID: "ed25519:k", Key: pub, DB: db, Advertise: net.JoinHostPort(addr, itoa(port)),
		TXT: testBinding(name, pub)})
	if err := s.parseAdvertise(); err != nil {
		t.Fatal(err)
	}
	s.sendHook = func([]byte, iface) {}
	s.setInterfaces([]iface{fakeIface(addr)}, time.Unix(1_800_000_000, 0))
	return s, pub
}

func itoa(n int) string { return strconv.Itoa(n) }

// announcementOf is what name would multicast, with the given addresses.
func announcementOf(t testing.TB, name string, key ed25519.PublicKey, port int, ttl time.Duration, addrs ...string) []byte {
	t.Helper()
	var as []netip.Addr
	for _, a := range addrs {
		as = append(as, netip.MustParseAddr(a))
	}
	b, err := buildResponse(self{serverName: name, port: port, txt: txtRecords(name, "ed25519:k", key, testBinding(name, key)...)}, ttl, as)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestNotTooTrusting: an announcement routes only a LAN-only name at an
// address on the receiving interface's subnet. matrix.org at 127.0.0.1
// (or at a LAN address) gets no route; loopback, off-subnet and IPv6
// link-local addresses are dropped; our own name is ignored; packets
// from interfaces we do not run on are ignored.
func TestNotTooTrusting(t *testing.T) {
	s, _ := offline(t, "me.local", "10.77.0.1", 8448)
	var routed []string
	s.OnChange(func(p Peer, gone bool) {
		if !gone {
			routed = append(routed, p.ServerName+" "+s.Route(p))
		}
	})
	key, _, _ := genKey()
	now := time.Unix(1_800_000_000, 0)
	feed := func(name string, ifIndex int, addrs ...string) {
		s.handlePacket(t.Context(), announcementOf(t, name, key, 8008, RecordTTL, addrs...), ifIndex, now)
	}
	feed("matrix.org", 7, "127.0.0.1")
	feed("example.org", 7, "10.77.0.9")
	feed("loop.local", 7, "127.0.0.1", "::1")
	feed("far.local", 7, "203.0.113.5", "fe80::1")
	feed("me.local", 7, "10.77.0.5")
	feed("elsewhere.local", 9, "10.77.0.6")
	feed("near.local", 7, "fe80::2", "203.0.113.5", "fd00::1", "10.77.0.8")
	if len(routed) != 1 || routed[0] != "near.local 10.77.0.8:8008" {
		t.Fatalf("routes given: %v", routed)
	}
	got := map[string]Peer{}
	for _, p := range s.Peers() {
		got[p.ServerName] = p
	}
	if len(got) != 5 {
		t.Errorf("listed %v", s.Peers())
	}
	for _, name := range []string{"matrix.org", "loop.local", "far.local"} {
		if p := got[name]; len(p.Addrs) != 0 || p.Routable() {
			t.Errorf("%s kept addresses %v", name, p.Addrs)
		}
	}
	if p := got["example.org"]; p.Routable() || p.LAN {
		t.Errorf("a public name announced at a LAN address is routable: %+v", p)
	}
	if p := got["near.local"]; strings.Join(p.Addrs, ",") != "10.77.0.8" {
		t.Errorf("near.local addresses %v: only the on-subnet one", p.Addrs)
	}
}

// TestAnswersQueries: a browse query is answered after 20–120 ms on the
// interface it came in on, at most once a second however many queries
// come (a flood is not amplified), and not when the asker lists our PTR
// as a known answer; a refresh query for our instance is answered at once.
func TestAnswersQueries(t *testing.T) {
	s, _ := offline(t, "me.local", "10.77.0.1", 8448)
	now := time.Unix(1_800_000_000, 0)
	s.annLeft, s.nextQuery = 0, time.Time{}
	browse, _ := buildQuery("", nil)
	for i := range 100 {
		s.handlePacket(t.Context(), browse, 7, now.Add(time.Duration(i)*time.Millisecond))
	}
	at, ok := s.respondAt[7]
	if !ok || at.Sub(now) < 20*time.Millisecond || at.Sub(now) > 120*time.Millisecond {
		t.Fatalf("answer scheduled at %v", at.Sub(now))
	}
	s.sent = 0
	s.tick(at)
	if s.sent != 1 {
		t.Fatalf("sent %d answers to a burst of queries", s.sent)
	}
	s.handlePacket(t.Context(), browse, 7, at.Add(10*time.Millisecond))
	if next := s.respondAt[7]; next.Sub(at) < time.Second {
		t.Errorf("second answer %v after the first, want ≥ 1 s (RFC 6762 §6.2)", next.Sub(at))
	}
	delete(s.respondAt, 7)
	known, _ := buildQuery("", []knownAnswer{{instance: s.me.instance(), ttl: RecordTTL}})
	s.handlePacket(t.Context(), known, 7, at.Add(5*time.Second))
	if _, ok := s.respondAt[7]; ok {
		t.Error("answered a query that knows us (RFC 6762 §7.1)")
	}
	refresh, _ := buildQuery(s.me.instance(), nil)
	s.handlePacket(t.Context(), refresh, 7, at.Add(10*time.Second))
	if next := s.respondAt[7]; !next.Equal(at.Add(10 * time.Second)) {
		t.Errorf("a refresh query is answered at %v, want at once", next.Sub(at))
	}
	other, _ := buildQuery("someone-else._hearth._tcp.local.", nil)
	delete(s.respondAt, 7)
	s.handlePacket(t.Context(), other, 7, at.Add(20*time.Second))
	if _, ok := s.respondAt[7]; ok {
		t.Error("answered a query for another instance")
	}
}

// TestQuietHour runs two daemons on a simulated clock for three hours,
// each packet delivered to the other, and counts what one sends in the
// third (quiet) hour: its browse query with back-off to an hour, its
// refreshes of the other's records and its answers to the other's. Ten
// or so; the old 10 s browse rounds sent 360 queries an hour plus the
// answers.
func TestQuietHour(t *testing.T) {
	a, _ := offline(t, "anna.local", "10.77.0.1", 8448)
	b, _ := offline(t, "bob.local", "10.77.0.2", 8448)
	b.ifs[0].addrs = a.ifs[0].addrs // one link: each is on the other's subnet
	a.ifs[0].addrs = append(a.ifs[0].addrs, netip.MustParsePrefix("10.77.0.2/24"))
	b.ifs = a.ifs
	type pkt struct {
		to *Service
		b  []byte
	}
	var inbox []pkt
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	var aSentAt []time.Duration
	a.sendHook = func(p []byte, _ iface) {
		inbox = append(inbox, pkt{b, p})
		aSentAt = append(aSentAt, now.Sub(t0))
	}
	b.sendHook = func(p []byte, _ iface) { inbox = append(inbox, pkt{a, p}) }
	for now.Before(t0.Add(3 * time.Hour)) {
		// Everything due now, and the packets it sends, delivered at once.
		var next time.Time
		for {
			next = earliest(a.tick(now), b.tick(now))
			if len(inbox) == 0 {
				break
			}
			for len(inbox) > 0 {
				p := inbox[0]
				inbox = inbox[1:]
				p.to.handlePacket(t.Context(), p.b, 7, now)
			}
		}
		if !next.After(now) {
			t.Fatalf("at %v the schedule does not advance", now.Sub(t0))
		}
		now = next
		if len(a.Peers()) != 1 && now.Sub(t0) > 2*time.Second {
			t.Fatalf("at %v a lists %+v", now.Sub(t0), a.Peers())
		}
	}
	var firstMinute, quiet int
	for _, at := range aSentAt {
		if at < time.Minute {
			firstMinute++
		}
		if at >= 2*time.Hour {
			quiet++
		}
	}
	t.Logf("a sent %d packets in its first minute and %d in its third hour (%v)", firstMinute, quiet, aSentAt[len(aSentAt)-quiet:])
	if quiet > 12 || quiet == 0 {
		t.Errorf("a quiet daemon sent %d packets in an hour: %v", quiet, aSentAt)
	}
}

// TestMalformedPackets: truncated, oversized, compressed-loop and
// record-bomb packets neither crash nor grow the table beyond its caps.
func TestMalformedPackets(t *testing.T) {
	s, _ := offline(t, "me.local", "10.77.0.1", 8448)
	now := time.Unix(1_800_000_000, 0)
	key, _, _ := genKey()
	good := announcementOf(t, "peer.local", key, 8008, RecordTTL, "10.77.0.8")
	for i := range good {
		s.handlePacket(t.Context(), good[:i], 7, now)
	}
	s.handlePacket(t.Context(), make([]byte, maxPacket+1), 7, now)
	loop := []byte{0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 12, 0, 12, 0, 1, 0, 0, 0, 10, 0, 2, 0xc0, 12}
	s.handlePacket(t.Context(), loop, 7, now)
	// Many instances in one packet: bounded work per packet.
	bd := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true})
	bd.StartAnswers()
	for i := range 300 {
		n := dnsmessage.MustNewName("x" + itoa(i) + "._hearth._tcp.local.")
		bd.TXTResource(dnsmessage.ResourceHeader{Name: n, Class: dnsmessage.ClassINET, TTL: 4500},
			dnsmessage.TXTResource{TXT: txtRecords("x"+itoa(i)+".example.org", "ed25519:k", key)})
		bd.SRVResource(dnsmessage.ResourceHeader{Name: n, Class: dnsmessage.ClassINET, TTL: 4500},
			dnsmessage.SRVResource{Port: 1, Target: n})
	}
	bomb, _ := bd.Finish()
	s.handlePacket(t.Context(), bomb, 7, now)
	if n := len(s.Peers()); n > 64 {
		t.Errorf("one packet made %d peers", n)
	}
	s.handlePacket(t.Context(), good, 7, now)
	if ps := s.Peers(); len(ps) == 0 {
		t.Error("the intact packet after the bad ones was not read")
	}
}

// FuzzParseTXT: no TXT record crashes the parser, and whatever it
// accepts has a valid server name and a 32-byte key.
func FuzzParseTXT(f *testing.F) {
	key := "ZvW8mdjCwvUKCB4IbR2Wl1gQIHl9hH8n1sFJ4dVqBQo"
	f.Add("v=1\x00server_name=hs.local\x00key=ed25519:a:" + key)
	f.Add("v=1\x00server_name=a\x00key=ed25519::\x00cert=x")
	f.Add("\x00\x00=\x00v=")
	f.Add(strings.Repeat("x=1\x00", 20))
	f.Fuzz(func(t *testing.T, joined string) {
		a, err := parseTXT(strings.Split(joined, "\x00"))
		if err == nil && (!validServerName(a.name) || !strings.HasPrefix(a.keyID, "ed25519:") || len(a.key) != 43) {
			t.Fatalf("accepted %+v", a)
		}
	})
}

// FuzzHandlePacket: no packet crashes the handler or makes more than the
// table's caps; whatever is routable is a LAN name at an on-subnet address.
func FuzzHandlePacket(f *testing.F) {
	key, _, _ := genKey()
	f.Add(announcementOf(f, "peer.local", key, 8008, RecordTTL, "10.77.0.8", "fd00::1"))
	f.Add(announcementOf(f, "matrix.org", key, 8008, RecordTTL, "127.0.0.1"))
	f.Add(announcementOf(f, "peer.local", key, 8008, 0, "10.77.0.8"))
	q, _ := buildQuery("", []knownAnswer{{instance: "a._hearth._tcp.local.", ttl: time.Minute}})
	f.Add(q)
	f.Add([]byte{0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 12})
	s, _ := offline(f, "me.local", "10.77.0.1", 8448)
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, b []byte) {
		s.handlePacket(t.Context(), b, 7, now)
		s.tick(now.Add(time.Second))
		if n := len(s.Peers()); n > MaxPeers {
			t.Fatalf("%d peers", n)
		}
		for _, p := range s.Peers() {
			if p.Routable() && (!isLANName(p.ServerName) || !strings.HasPrefix(s.Route(p), "10.77.0.")) {
				t.Fatalf("routable: %+v", p)
			}
		}
	})
}

// TestWakeFromSleep: when the network monitor says the machine slept, the
// service announces again, browses at once
// without known answers, and drops the peers that do not answer within
// wakeGrace; a peer that answers stays.
func TestWakeFromSleep(t *testing.T) {
	s, _ := offline(t, "me.local", "10.77.0.1", 8448)
	key, _, _ := genKey()
	var sent [][]byte
	s.sendHook = func(b []byte, _ iface) { sent = append(sent, b) }
	now := time.Now()
	s.tick(now)
	for _, name := range []string{"stays.local", "left.local"} {
		s.handlePacket(t.Context(), announcementOf(t, name, key, 8008, RecordTTL, "10.77.0.8"), 7, now)
	}
	s.annLeft, s.nextQuery, s.queryEvery = 0, now.Add(time.Hour), time.Hour
	s.tick(now.Add(time.Second))
	if len(s.Peers()) != 2 {
		t.Fatalf("peers %+v", s.Peers())
	}
	sent = nil
	woke := now.Add(2 * time.Second)
	s.netChanged(netmon.Change{Slept: true}, woke)
	s.tick(woke)
	var announced, queried bool
	for _, b := range sent {
		pk, err := parsePacket(b)
		if err != nil {
			t.Fatal(err)
		}
		if pk.response && len(sightings(pk)) == 1 {
			announced = true
		}
		if !pk.response {
			queried = true
			if len(pk.records) != 1 { // only our own PTR, so we do not answer ourselves
				t.Errorf("the query on waking lists known answers: %+v", pk.records)
			}
		}
	}
	if !announced || !queried {
		t.Fatalf("on waking: announced %v, queried %v", announced, queried)
	}
	s.handlePacket(t.Context(), announcementOf(t, "stays.local", key, 8008, RecordTTL, "10.77.0.8"), 7, woke.Add(100*time.Millisecond))
	s.tick(woke.Add(wakeGrace))
	if ps := s.Peers(); len(ps) != 1 || ps[0].ServerName != "stays.local" {
		t.Fatalf("after waking: %+v", ps)
	}
}

// TestSecondAnnouncementWithQuery: at start the second announcement goes
// out with the second browse query, in one wake-up, at least a second
// after the first (RFC 6762 §8.3); the first announcement goes at once
// and the queries keep their schedule (20–120 ms, then 1, 3 s apart).
// Before, the second announcement woke the daemon on its own, 20–120 ms
// before the second query.
func TestSecondAnnouncementWithQuery(t *testing.T) {
	s, _ := offline(t, "me.local", "10.77.0.1", 8448)
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	var anns, queries []time.Duration
	s.sendHook = func(b []byte, _ iface) {
		pk, err := parsePacket(b)
		if err != nil {
			t.Fatal(err)
		}
		if pk.response {
			anns = append(anns, now.Sub(t0))
		} else {
			queries = append(queries, now.Sub(t0))
		}
	}
	wakes := 0
	for now.Before(t0.Add(5 * time.Second)) {
		next := s.tick(now)
		wakes++
		if !next.After(now) {
			t.Fatalf("at %v the schedule does not advance", now.Sub(t0))
		}
		now = next
	}
	if len(anns) != 2 || len(queries) != 3 {
		t.Fatalf("announcements at %v, queries at %v", anns, queries)
	}
	if anns[0] != 0 {
		t.Errorf("first announcement at %v, want at once", anns[0])
	}
	if q := queries[0]; q < 20*time.Millisecond || q > 120*time.Millisecond {
		t.Errorf("first query at %v", q)
	}
	if queries[1]-queries[0] != time.Second || queries[2]-queries[1] != 3*time.Second {
		t.Errorf("queries at %v: want 1 s, then 3 s apart", queries)
	}
	if anns[1] != queries[1] || anns[1]-anns[0] < time.Second {
		t.Errorf("second announcement at %v, second query at %v: want together, ≥ 1 s after the first", anns[1], queries[1])
	}
	t.Logf("announcements %v, queries %v, %d wake-ups", anns, queries, wakes)
}

// TestBrowseBackoff: alone on the LAN, the browse queries go 20–120 ms
// after start, then 1 s apart, and each interval is three times the one
// before up to the hour (RFC 6762 §5.2 asks for at least one second, then
// at least a factor of two): five queries in the first minute, where the
// doubling schedule sent six, each a wake-up of an idle daemon.
func TestBrowseBackoff(t *testing.T) {
	s, _ := offline(t, "me.local", "10.77.0.1", 8448)
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	var queries []time.Duration
	s.sendHook = func(b []byte, _ iface) {
		pk, err := parsePacket(b)
		if err != nil {
			t.Fatal(err)
		}
		if !pk.response {
			queries = append(queries, now.Sub(t0))
		}
	}
	for now.Before(t0.Add(3 * time.Hour)) {
		next := s.tick(now)
		if !next.After(now) {
			t.Fatalf("at %v the schedule does not advance", now.Sub(t0))
		}
		now = next
	}
	if q := queries[0]; q < 20*time.Millisecond || q > 120*time.Millisecond {
		t.Errorf("first query at %v", q)
	}
	inMinute := 0
	for _, q := range queries {
		if q < time.Minute {
			inMinute++
		}
	}
	want := time.Second
	for i := 1; i < len(queries); i++ {
		if gap := queries[i] - queries[i-1]; gap != want {
			t.Fatalf("queries at %v: gap %d is %v, want %v", queries, i, gap, want)
		}
		want = min(3*want, MaxQueryInterval)
	}
	if inMinute != 5 || want != MaxQueryInterval {
		t.Errorf("queries at %v: %d in the first minute, want 5 and the hourly ceiling within 3 h", queries, inMinute)
	}
}
