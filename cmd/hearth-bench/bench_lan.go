package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/hearth-chat/hearth/internal/netns"
)

// The lan section (issue 11, "people nearby"): daemons with default
// settings (only a data dir) on a LAN of network namespaces the bench
// builds (internal/netns: a bridge and hosts with no route anywhere
// else), so LAN discovery and LAN federation run as they do on two
// laptops, and the bench's mDNS stays on that bridge. The bench reaches
// each daemon's client API at 127.0.0.1:8008 inside its host through a
// dialer into the namespace (nsDialers), its control API through the
// socket in the data dir. Where namespaces cannot be made (not Linux, not
// root, no iproute2) every row says "skipped: why".
//
//	listed   host A runs a daemon; exec `hearth run` on host B (fresh
//	         data dir) and poll A's `hearth peers --json` until it lists
//	         B; -starts times, B stopped cleanly in between
//	quiet    a third host listens to the bridge's mDNS (224.0.0.251:5353)
//	         and counts the datagrams from each daemon's address: B's
//	         from exec to the end of a -idle-cpu-window quiet window
//	         starting 10 s after ready, and within that window; the
//	         spacing of B's browse queries, and, when it doubles (the
//	         back-off up to an hour), the first hour's count projected
//	         from it. CPU ticks over the window and VmRSS at its end
//	latency  alice on A makes a public room, bob on B joins it over LAN
//	         federation (B finds A's .local name through discovery and
//	         trusts it through the certificate binding); alice sends
//	         -fed-msgs messages -fed-interval apart, timed to bob's /sync

const (
	lanListedTarget  = "≤ 1 s"
	lanLatencyTarget = "p50 ≤ 10 ms"
	lanPacketsTarget = "a handful"
	lanIdleTarget    = "≤ 30 MiB, 0 ticks"
	lanSettle        = 10 * time.Second // after ready, before the quiet window
)

var readyName = regexp.MustCompile(`hearth is ready.* server_name="?([^"\s]+)`)

func benchLAN(ctx context.Context, b *bench) []row {
	c := b.cfg
	listMetric := fmt.Sprintf("lan: exec `hearth run` on host B → listed by A's `hearth peers` (median of %d, fresh data dir)", c.starts)
	pktMetric := fmt.Sprintf("lan: mDNS packets multicast by B (counted on the bridge), start-up + %s quiet window; its browse back-off", c.idleCPUWindow)
	idleMetric := fmt.Sprintf("lan: B idle with discovery and LAN federation on (defaults): VmRSS / CPU ticks over %s; A's", c.idleCPUWindow)
	latMetric := fmt.Sprintf("lan: send on A → bob's /sync on B over LAN federation, %d msgs %s apart: p50 / p95", c.fedMsgs, c.fedInterval)
	metrics := []struct{ m, t string }{{listMetric, lanListedTarget}, {pktMetric, lanPacketsTarget}, {idleMetric, lanIdleTarget}, {latMetric, lanLatencyTarget}}
	all := func(f func(m, t string) row) []row {
		var rs []row
		for _, m := range metrics {
			rs = append(rs, f(m.m, m.t))
		}
		return rs
	}
	failAll := func(err error) []row { return all(func(m, t string) row { return errRow(m, t, err) }) }

	// A machine that cannot build the LAN (no namespaces, bridges or
	// veths) skips the section; the rest of the bench goes on.
	skipAll := func(err error) []row {
		return all(func(m, t string) row { return row{metric: m, value: "skipped: " + err.Error(), target: t} })
	}
	lan, err := netns.New()
	if errors.Is(err, netns.ErrUnavailable) {
		return skipAll(err)
	}
	if err != nil {
		return failAll(err)
	}
	defer lan.Close()
	var hosts [3]*netns.Host // A, B, the listener
	for i, name := range []string{"anna-laptop", "ben-laptop", "listener"} {
		if hosts[i], err = lan.AddHost(name); err != nil {
			return skipAll(fmt.Errorf("cannot build the LAN here: %w", err))
		}
	}
	hA, hB := hosts[0], hosts[1]
	sn, err := sniffMDNS(hosts[2])
	if err != nil {
		return failAll(err)
	}
	defer sn.close()

	a, _, err := b.startNS(ctx, hA)
	if err != nil {
		return failAll(fmt.Errorf("start on A: %w", err))
	}
	defer b.stop(a)
	rows := []row{}
	bd, listRow := lanListed(ctx, b, a, hB, listMetric)
	rows = append(rows, listRow)
	if bd == nil {
		return append(rows, all(func(m, t string) row { return errRow(m, t, errors.New("no daemon on B")) })[1:]...)
	}
	defer b.stop(bd.d)
	pktRow, idleRow := lanQuiet(ctx, b, sn, a, bd, hA, hB, pktMetric, idleMetric)
	rows = append(rows, pktRow, idleRow, lanLatency(ctx, b, a, bd.d, latMetric))
	return rows
}

// nsDaemon is a daemon on host B with the time it was exec'd.
type nsDaemon struct {
	d    *daemon
	exec time.Time
}

// startNS starts `hearth run --data-dir DIR` and nothing else inside host
// h and waits for its client API there.
func (b *bench) startNS(ctx context.Context, h *netns.Host) (*daemon, time.Duration, error) {
	host := h.NS + ".netns" // the base URL's host, which dialBench maps to the namespace
	nsDialers.Store(host, h.DialContext)
	d, logf, err := b.newDaemonDir("http://" + host + ":8008")
	if err != nil {
		return nil, 0, err
	}
	defer logf.Close()
	runDir := filepath.Join(filepath.Dir(d.dataDir), "run")
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, 0, err
	}
	return b.launch(ctx, d, logf, h.Wrap([]string{b.cfg.hearth, "run", "--data-dir", d.dataDir}, runDir))
}

// serverName is the name the daemon chose, from its ready log line.
func (d *daemon) serverName() string {
	data, _ := os.ReadFile(d.logPath)
	m := readyName.FindAllSubmatch(data, -1)
	if len(m) == 0 {
		return ""
	}
	return string(m[len(m)-1][1])
}

// lanPeer is one entry of `hearth peers --json`.
type lanPeer struct {
	ServerName string   `json:"server_name"`
	Addresses  []string `json:"addresses"`
}

// peers runs `hearth peers --json` against the daemon's control socket.
func (b *bench) peers(ctx context.Context, d *daemon) ([]lanPeer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.cfg.hearth, "peers", "--json", "--data-dir", d.dataDir)
	cmd.Env = childEnv()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("hearth peers: %w: %s", err, out)
	}
	var st struct {
		Enabled bool      `json:"enabled"`
		Peers   []lanPeer `json:"peers"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("hearth peers --json: %w: %s", err, out)
	}
	if !st.Enabled {
		return nil, fmt.Errorf("LAN discovery is off on %s: %s", d.dataDir, out)
	}
	return st.Peers, nil
}

// lanListed execs a daemon on hB -starts times, each on a fresh data dir
// (so a new key and a new name), timing exec → the first `hearth peers`
// answer of A that lists a new name at hB's address (the end of that
// poll: an upper bound, one `hearth peers` exec late at most). Each is
// stopped cleanly before the next, except the last, which it returns.
func lanListed(ctx context.Context, b *bench, a *daemon, hB *netns.Host, metric string) (*nsDaemon, row) {
	var ts, readies, polls []time.Duration
	seen := map[string]bool{}
	var last *nsDaemon
	for i := range b.cfg.starts {
		t0 := time.Now()
		type started struct {
			d     *daemon
			ready time.Duration
			err   error
		}
		sc := make(chan started, 1)
		go func() {
			d, r, err := b.startNS(ctx, hB)
			sc <- started{d, r, err}
		}()
		var listed time.Duration
		for listed == 0 {
			p0 := time.Now()
			ps, err := b.peers(ctx, a)
			if err != nil {
				return nil, errRow(metric, lanListedTarget, err)
			}
			polls = append(polls, time.Since(p0))
			for _, p := range ps {
				if !seen[p.ServerName] && slices.Contains(p.Addresses, hB.IP) {
					listed = time.Since(t0)
				}
			}
			if listed == 0 && time.Since(t0) > 30*time.Second {
				st := <-sc
				if st.d != nil {
					b.stop(st.d)
				}
				return nil, errRow(metric, lanListedTarget, fmt.Errorf("start %d: B not listed by A within 30 s (B: %v)", i, st.err))
			}
		}
		st := <-sc
		if st.err != nil {
			return nil, errRow(metric, lanListedTarget, fmt.Errorf("start %d on B: %w", i, st.err))
		}
		seen[st.d.serverName()] = true
		ts, readies = append(ts, listed), append(readies, st.ready)
		b.logf("start %d: B %s listed by A after %s (ready after %s)", i, st.d.serverName(), listed, st.ready)
		if i == b.cfg.starts-1 {
			last = &nsDaemon{d: st.d, exec: t0}
		} else {
			b.stop(st.d)
		}
	}
	slices.Sort(ts)
	v := fmt.Sprintf("%s (min %s, max %s; B's exec → /versions median %s; one `hearth peers` poll median %s)",
		ms(ts[len(ts)/2]), msNum(ts[0]), msNum(ts[len(ts)-1]), ms(pct(readies, 50)), ms(pct(polls, 50)))
	return last, row{metric: metric, value: v, target: lanListedTarget, nums: figs(fig("", msF(ts[len(ts)/2]), "ms"))}
}

// lanQuiet leaves A and B alone: a quiet window of -idle-cpu-window
// starting lanSettle after B's ready, counting mDNS packets, CPU ticks
// and VmRSS of both.
func lanQuiet(ctx context.Context, b *bench, sn *sniffer, a *daemon, bd *nsDaemon, hA, hB *netns.Host, pktMetric, idleMetric string) (row, row) {
	fail := func(err error) (row, row) {
		return errRow(pktMetric, lanPacketsTarget, err), errRow(idleMetric, lanIdleTarget, err)
	}
	if err := sleep(ctx, lanSettle); err != nil {
		return fail(err)
	}
	w0 := time.Now()
	ca0, err1 := cpuTicks(a.pid)
	cb0, err2 := cpuTicks(bd.d.pid)
	if err := errors.Join(err1, err2); err != nil {
		return fail(err)
	}
	if err := sleep(ctx, b.cfg.idleCPUWindow); err != nil {
		return fail(err)
	}
	w1 := time.Now()
	if err := errors.Join(a.alive(), bd.d.alive()); err != nil {
		return fail(err)
	}
	ca1, err1 := cpuTicks(a.pid)
	cb1, err2 := cpuTicks(bd.d.pid)
	rssA, err3 := rssDetail(a.pid)
	rssB, err4 := rssDetail(bd.d.pid)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fail(err)
	}
	sn.log(b, bd.exec)
	window := w1.Sub(w0)
	bTotal := sn.count(hB.IP, bd.exec, w1)
	bQuiet, aQuiet := sn.count(hB.IP, w0, w1), sn.count(hA.IP, w0, w1)
	gaps, lastQuery := sn.queryGaps(hB.IP, bd.exec, w1)
	val := fmt.Sprintf("B: %d from exec to the window's end, %d in the %.0f s window (A: %d); B's browse queries %s apart",
		bTotal, bQuiet, window.Seconds(), aQuiet, gapList(gaps))
	if more, ok := projectBackoff(gaps, lastQuery); ok {
		val += fmt.Sprintf(" (doubling): first hour ≈ %d (+ record refreshes near the 30 min TTL), later hours fewer", bTotal+more)
	}
	pkt := row{metric: pktMetric, target: lanPacketsTarget, value: val,
		nums: figs(fig("B total", float64(bTotal), "packets"), fig("B in window", float64(bQuiet), "packets"))}
	idle := row{metric: idleMetric, target: lanIdleTarget, value: fmt.Sprintf("B: %s / %d ticks; A: %s / %d ticks", rssB, cb1-cb0, rssA, ca1-ca0)}
	if kb, err := memKB(bd.d.pid, "VmRSS"); err == nil {
		idle.nums = figs(fig("B", mibF(kb), "MiB"), fig("B", float64(cb1-cb0), "ticks"), fig("A", float64(ca1-ca0), "ticks"))
	}
	return pkt, idle
}

// lanLatency: alice on A makes a public room with an alias; bob on B
// joins it by alias (A's .local name, resolved through discovery) and
// long-polls /sync while alice sends.
func lanLatency(ctx context.Context, b *bench, a, bd *daemon, metric string) row {
	fail := func(err error) row { return errRow(metric, lanLatencyTarget, err) }
	alice, err := b.addAccount(ctx, a, "alice")
	if err != nil {
		return fail(err)
	}
	bob, err := b.addAccount(ctx, bd, "bob")
	if err != nil {
		return fail(err)
	}
	roomID, err := b.createPublicRoom(ctx, alice, "latency")
	if err != nil {
		return fail(err)
	}
	alias := "#latency:" + a.serverName()
	if err := b.join(ctx, bob, alias); err != nil {
		return fail(fmt.Errorf("bob on B joins %s: %w", alias, err))
	}
	msgs := b.cfg.fedMsgs
	lat, cpuUse, err := timeDelivery(ctx, b, alice, bob, roomID, "lan", msgs, b.cfg.fedInterval, a.pid)
	if err != nil {
		return fail(err)
	}
	v := fmt.Sprintf("%s / %s (max %s; A %s)", msNum(pct(lat, 50)), ms(pct(lat, 95)), ms(lat[len(lat)-1]), strings.TrimPrefix(cpuUse, "CPU: "))
	out := row{metric: metric, value: v, target: lanLatencyTarget,
		nums: figs(fig("p50", msF(pct(lat, 50)), "ms"), fig("p95", msF(pct(lat, 95)), "ms"))}
	if missing := msgs - len(lat); missing > 0 {
		out.value += fmt.Sprintf("; PROBLEM: %d of %d never reached bob", missing, msgs)
		out.failed = true
	}
	return out
}

// addAccount creates an account the way the owner of a default daemon
// (registration closed) does, with `hearth account add` through the
// control socket, and logs it in.
func (b *bench) addAccount(ctx context.Context, d *daemon, name string) (*user, error) {
	pw := "bench-password-" + name
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, b.cfg.hearth, "account", "add", name, "--password", pw, "--data-dir", d.dataDir)
	cmd.Env = childEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("hearth account add %s: %w: %s", name, err, out)
	}
	var out struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	body := map[string]any{"type": "m.login.password", "password": pw,
		"identifier": map[string]string{"type": "m.id.user", "user": name}}
	if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/login", "", body, &out, reqTimeout); err != nil {
		return nil, err
	}
	return &user{d: d, id: out.UserID, token: out.AccessToken}, nil
}

// sniffer counts the mDNS datagrams a host hears on the bridge, by
// source address. It sends nothing, so it is never a peer and never
// asked for a unicast answer: what it counts is every multicast packet
// the daemons send (unicast answers between two daemons, if any, are not
// seen).
type sniffer struct {
	conn *ipv4.PacketConn
	mu   sync.Mutex
	seen []heard
	done chan struct{}
}

type heard struct {
	at    time.Time
	src   string
	query bool // the DNS header's QR bit is clear
	size  int
}

func sniffMDNS(h *netns.Host) (*sniffer, error) {
	s := &sniffer{done: make(chan struct{})}
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err := net.ListenPacket("udp4", "0.0.0.0:5353")
		if err != nil {
			return err
		}
		s.conn = ipv4.NewPacketConn(c)
		if err := s.conn.JoinGroup(ifi, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251)}); err != nil {
			c.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listen for mDNS in %s: %w", h.NS, err)
	}
	go func() {
		defer close(s.done)
		buf := make([]byte, 9000)
		for {
			n, _, src, err := s.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			ua, ok := src.(*net.UDPAddr)
			if !ok {
				continue
			}
			s.mu.Lock()
			s.seen = append(s.seen, heard{at: time.Now(), src: ua.IP.String(), query: n > 2 && buf[2]&0x80 == 0, size: n})
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// count is how many datagrams from ip arrived in [from, to).
func (s *sniffer) count(ip string, from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, h := range s.seen {
		if h.src == ip && !h.at.Before(from) && h.at.Before(to) {
			n++
		}
	}
	return n
}

// queryGaps is the spacing of the queries from ip in [from, to).
// The second result is the last query's time after from.
func (s *sniffer) queryGaps(ip string, from, to time.Time) ([]time.Duration, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gaps []time.Duration
	var last time.Time
	for _, h := range s.seen {
		if h.src != ip || !h.query || h.at.Before(from) || !h.at.Before(to) {
			continue
		}
		if !last.IsZero() {
			gaps = append(gaps, h.at.Sub(last))
		}
		last = h.at
	}
	if last.IsZero() {
		return nil, 0
	}
	return gaps, last.Sub(from)
}

// gapList prints gaps rounded to the second ("1, 2, 4 s").
func gapList(gaps []time.Duration) string {
	if len(gaps) == 0 {
		return "(none)"
	}
	var ss []string
	for _, g := range gaps {
		ss = append(ss, fmt.Sprintf("%.0f", g.Seconds()))
	}
	return strings.Join(ss, ", ") + " s"
}

// projectBackoff counts the queries still to come in the first hour
// after exec if the spacing goes on doubling (discovery's back-off, up to
// an hour), given the gaps seen and the last query's time after exec; ok
// is false when the last
// two gaps do not double (within 20 %), so there is nothing to project
// from.
func projectBackoff(gaps []time.Duration, last time.Duration) (int, bool) {
	if len(gaps) < 2 {
		return 0, false
	}
	g, prev := gaps[len(gaps)-1], gaps[len(gaps)-2]
	if r := float64(g) / float64(prev); r < 1.6 || r > 2.4 {
		return 0, false
	}
	t, n := last, 0
	for {
		g = min(2*g, time.Hour)
		if t += g; t > time.Hour {
			return n, true
		}
		n++
	}
}

// log lists what was heard, with times relative to t0 (for -v).
func (s *sniffer) log(b *bench, t0 time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.seen {
		kind := "response"
		if h.query {
			kind = "query"
		}
		b.logf("mDNS from %s at %+.3f s: %s, %d bytes", h.src, h.at.Sub(t0).Seconds(), kind, h.size)
	}
}

func (s *sniffer) close() {
	s.conn.Close()
	<-s.done
}
