package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// The abuse section (issue 10): one daemon with federation on is flooded
// with connections that cost it without doing anything, while its owner
// keeps using it.
//
//	client idle   -abuse-idle keep-alives to the client API, each idle
//	              after one GET /versions
//	client slow   -abuse-slow POST /login with headers sent and a body
//	              that never comes (slowloris)
//	federation    -abuse-fed connections to the federation listener that
//	              never finish their TLS handshake, spread over 40
//	              loopback addresses (127.0.0.2…) so the total cap, not
//	              only the per-address one, is reached
//
// Measured: the daemon's open descriptors (/proc/PID/fd) and VmRSS idle,
// under abuse, after -abuse-hold (past the 30 s body deadline) and after
// the attacker hung up; the owner's latency (GET /joined_rooms and PUT
// /send alternately, -abuse-reqs requests) idle and under abuse.

const (
	abuseFDTarget      = "under abuse ≤ the caps (1024 client + 1024 federation) + idle; back to idle after"
	abuseLatencyTarget = "under abuse ≈ idle"
	abuseClosedTarget  = "all stalled bodies closed by the daemon"
	abuseFedAddrs      = 40
)

func benchAbuse(ctx context.Context, b *bench) []row {
	c := b.cfg
	fdMetric := fmt.Sprintf("abuse: daemon descriptors idle → under abuse → %s later → attacker gone", c.abuseHold)
	rssMetric := fmt.Sprintf("abuse: daemon VmRSS idle → under abuse → %s later → attacker gone", c.abuseHold)
	latMetric := fmt.Sprintf("abuse: owner's request latency, %d requests (GET /joined_rooms, PUT /send alternately): p50 / p99 idle → under abuse", c.abuseReqs)
	shedMetric := fmt.Sprintf("abuse: %d idle + %d slowloris to the client API, %d half-open to federation from %d addresses: what the daemon closed",
		c.abuseIdle, c.abuseSlow, c.abuseFed, abuseFedAddrs)
	fail := func(err error) []row {
		return []row{errRow(fdMetric, abuseFDTarget, err), errRow(rssMetric, "", err),
			errRow(latMetric, abuseLatencyTarget, err), errRow(shedMetric, abuseClosedTarget, err)}
	}
	ca, err := newBenchCA(filepath.Join(b.root, "abuse-ca"))
	if err != nil {
		return fail(err)
	}
	cert, key, err := ca.issue("abuse.bench")
	if err != nil {
		return fail(err)
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	fedAddr := fmt.Sprintf("127.0.0.1:%d", port)
	d, _, err := b.start(ctx, "--server-name", "abuse.bench", "--federation-listen", fedAddr,
		"--tls-cert", cert, "--tls-key", key)
	if err != nil {
		return fail(err)
	}
	defer b.stop(d)
	owner, err := b.register(ctx, d, "owner")
	if err != nil {
		return fail(err)
	}
	roomID, err := b.createRoom(ctx, owner)
	if err != nil {
		return fail(err)
	}
	// The owner's own client: its connections are not the bench's pool.
	hc := newHTTPClient()
	ownerLatency := func() (p50, p99 time.Duration, err error) {
		lat := make([]time.Duration, 0, c.abuseReqs)
		for i := range c.abuseReqs {
			t := time.Now()
			if i%2 == 0 {
				err = call(ctx, hc, d, "GET", "/_matrix/client/v3/joined_rooms", owner.token, nil, nil, reqTimeout)
			} else {
				err = sendWith(ctx, hc, owner, roomID, fmt.Sprintf("under abuse %d", i))
			}
			if err != nil {
				return 0, 0, err
			}
			lat = append(lat, time.Since(t))
		}
		return pct(lat, 50), pct(lat, 99), nil
	}
	type sample struct {
		fds int
		rss string
		kb  int64
	}
	measure := func() (sample, error) {
		fds, err := openFDs(d.pid)
		if err != nil {
			return sample{}, err
		}
		kb, err := memKB(d.pid, "VmRSS")
		return sample{fds, mb(kb), kb}, err
	}

	if _, _, err := ownerLatency(); err != nil { // warm-up
		return fail(err)
	}
	idle, err := measure()
	if err != nil {
		return fail(err)
	}
	idleP50, idleP99, err := ownerLatency()
	if err != nil {
		return fail(err)
	}

	a := &attacker{}
	defer a.hangUp()
	b.logf("abuse: opening %d idle, %d slow, %d federation connections", c.abuseIdle, c.abuseSlow, c.abuseFed)
	if err := a.open(ctx, d, fedAddr, c.abuseIdle, c.abuseSlow, c.abuseFed); err != nil {
		return fail(err)
	}
	under, err := measure()
	if err != nil {
		return fail(err)
	}
	abuseP50, abuseP99, err := ownerLatency()
	if err != nil {
		return fail(fmt.Errorf("the owner's client under abuse: %w", err))
	}
	if err := sleep(ctx, c.abuseHold); err != nil {
		return fail(err)
	}
	held, err := measure()
	if err != nil {
		return fail(err)
	}
	idleClosed, slowClosed, fedClosed := a.closedByServer()
	a.hangUp()
	hc.CloseIdleConnections()
	if err := sleep(ctx, 2*time.Second); err != nil {
		return fail(err)
	}
	after, err := measure()
	if err != nil {
		return fail(err)
	}
	if err := d.alive(); err != nil {
		return fail(err)
	}

	slowRow := row{metric: shedMetric, target: abuseClosedTarget,
		value: fmt.Sprintf("idle %d/%d (cap and idle timeout), stalled bodies %d/%d, federation %d/%d (caps and handshake deadline), within %s",
			idleClosed, c.abuseIdle, slowClosed, c.abuseSlow, fedClosed, c.abuseFed, c.abuseHold)}
	slowRow.failed = slowClosed < c.abuseSlow
	slowRow.nums = figs(fig("idle", float64(idleClosed), "closed"), fig("stalled", float64(slowClosed), "closed"),
		fig("federation", float64(fedClosed), "closed"))
	return []row{
		{metric: fdMetric, target: abuseFDTarget, value: fmt.Sprintf("%d → %d → %d → %d", idle.fds, under.fds, held.fds, after.fds),
			nums: figs(fig("idle", float64(idle.fds), "fds"), fig("abuse", float64(under.fds), "fds"),
				fig("held", float64(held.fds), "fds"), fig("gone", float64(after.fds), "fds"))},
		{metric: rssMetric, value: fmt.Sprintf("%s → %s → %s → %s", idle.rss, under.rss, held.rss, after.rss),
			nums: figs(fig("idle", mibF(idle.kb), "MiB"), fig("abuse", mibF(under.kb), "MiB"),
				fig("held", mibF(held.kb), "MiB"), fig("gone", mibF(after.kb), "MiB"))},
		{metric: latMetric, target: abuseLatencyTarget,
			value: fmt.Sprintf("%s / %s → %s / %s", msNum(idleP50), ms(idleP99), msNum(abuseP50), ms(abuseP99)),
			nums: figs(fig("idle p50", msF(idleP50), "ms"), fig("idle p99", msF(idleP99), "ms"),
				fig("abuse p50", msF(abuseP50), "ms"), fig("abuse p99", msF(abuseP99), "ms"))},
		slowRow,
	}
}

// sendWith is send through a given HTTP client.
func sendWith(ctx context.Context, hc *http.Client, u *user, roomID, text string) error {
	txn := "a" + strconv.FormatInt(u.txn.Add(1), 10)
	return call(ctx, hc, u.d, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+txn,
		u.token, map[string]string{"msgtype": "m.text", "body": text}, nil, reqTimeout)
}

// attacker holds the abusive connections.
type attacker struct {
	mu              sync.Mutex
	idle, slow, fed []net.Conn
}

// open makes the connections, 32 at a time.
func (a *attacker) open(ctx context.Context, d *daemon, fedAddr string, idle, slow, fed int) error {
	clientAddr := d.base[len("http://"):]
	dial := &net.Dialer{Timeout: 5 * time.Second}
	keep := func(list *[]net.Conn, c net.Conn) {
		a.mu.Lock()
		*list = append(*list, c)
		a.mu.Unlock()
	}
	err := parallel(idle, 32, func(int) error {
		c, err := dial.DialContext(ctx, "tcp", clientAddr)
		if err != nil {
			return fmt.Errorf("idle connection: %w", err)
		}
		fmt.Fprintf(c, "GET /_matrix/client/versions HTTP/1.1\r\nHost: %s\r\n\r\n", clientAddr)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			c.Close()
			return fmt.Errorf("idle connection's request: %w", err)
		}
		drain(resp)
		keep(&a.idle, c)
		return nil
	})
	if err != nil {
		return err
	}
	err = parallel(slow, 32, func(int) error {
		c, err := dial.DialContext(ctx, "tcp", clientAddr)
		if err != nil {
			return fmt.Errorf("slowloris connection: %w", err)
		}
		fmt.Fprintf(c, "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", clientAddr)
		keep(&a.slow, c)
		return nil
	})
	if err != nil {
		return err
	}
	return parallel(fed, 32, func(i int) error {
		// 127.0.0.2… are loopback too; if binding them fails, one address.
		fd := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%abuseFedAddrs))}}
		c, err := fd.DialContext(ctx, "tcp", fedAddr)
		if err != nil {
			c, err = dial.DialContext(ctx, "tcp", fedAddr)
		}
		if err != nil {
			return fmt.Errorf("federation connection: %w", err)
		}
		keep(&a.fed, c)
		return nil
	})
}

// closedByServer counts, per kind, the connections the daemon has closed:
// a read finds the end (after any answer it sent) rather than nothing.
func (a *attacker) closedByServer() (idle, slow, fed int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	count := func(conns []net.Conn) int {
		var n int
		var mu sync.Mutex
		parallel(len(conns), 64, func(i int) error {
			c := conns[i]
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
						mu.Lock()
						n++
						mu.Unlock()
					}
					return nil
				}
			}
		})
		return n
	}
	return count(a.idle), count(a.slow), count(a.fed)
}

// hangUp closes every connection; safe to call twice.
func (a *attacker) hangUp() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, list := range [][]net.Conn{a.idle, a.slow, a.fed} {
		for _, c := range list {
			c.Close()
		}
	}
	a.idle, a.slow, a.fed = nil, nil, nil
}

// openFDs counts the process's open descriptors.
func openFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}
