package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
)

// The federation section (issue 4): three daemons hs1…hs3.bench and a
// peer inside this process (peer.bench) federate over loopback TLS with
// certificates from a CA made for the run; each daemon finds the others
// through its static --federation-servers table.
//
//	latency  alice@hs1 sends, bob@hs2 receives in a long-polling /sync
//	ingest   the peer sends hs1 a chain of signed messages in
//	         transactions of 50, one in flight at a time
//	join     carol@hs3 joins a room the peer hosts with -fed-members
//	         members; hs3 is otherwise idle, so its VmHWM is the join's

const (
	fedLatencyTarget = "p50 ≤ 20 ms"
	fedIngestTarget  = "≥ 5,000 PDUs/s" // issue 15
	fedJoinTarget    = "≤ 5 s, peak RSS ≤ 150 MB"
)

// fedNet is the daemons and the peer of one federation section.
type fedNet struct {
	hs   map[string]*daemon // by server name
	peer *fedPeer
}

func benchFederation(ctx context.Context, b *bench) []row {
	c := b.cfg
	latMetric := fmt.Sprintf("federation: send on hs1 → bob's /sync on hs2, %d msgs %s apart: p50 / p95", c.fedMsgs, c.fedInterval)
	ingMetric := fmt.Sprintf("federation: PDUs/s ingested from a peer, %s-message chain, txns of 50 signed ahead, signatures checked", count(c.fedPDUs))
	joinMetric := fmt.Sprintf("federation: join a remote room of %s members (send_join state checked): time / peak RSS", count(c.fedMembers))
	net, err := b.startFedNet(ctx, "hs1.bench", "hs2.bench", "hs3.bench")
	if err != nil {
		return []row{errRow(latMetric, fedLatencyTarget, err), errRow(ingMetric, fedIngestTarget, err), errRow(joinMetric, fedJoinTarget, err)}
	}
	defer net.peer.close()
	rows := []row{fedLatency(ctx, b, net, latMetric), fedIngest(ctx, b, net, ingMetric), fedJoin(ctx, b, net, joinMetric)}
	b.logf("peer served: %s", net.peer.callCounts())
	return rows
}

// startFedNet makes the CA and the peer, picks every federation port,
// then starts one daemon per name with the whole table.
func (b *bench) startFedNet(ctx context.Context, names ...string) (*fedNet, error) {
	ca, err := newBenchCA(filepath.Join(b.root, "fed-ca"))
	if err != nil {
		return nil, err
	}
	peer, err := newFedPeer(ca, "peer.bench")
	if err != nil {
		return nil, err
	}
	addrs := map[string]string{string(peer.name): peer.addr}
	table := []string{string(peer.name) + "=" + peer.addr}
	for _, name := range names {
		port, err := freePort()
		if err != nil {
			peer.close()
			return nil, err
		}
		addrs[name] = fmt.Sprintf("127.0.0.1:%d", port)
		table = append(table, name+"="+addrs[name])
	}
	peer.tr.setAddrs(addrs)
	net := &fedNet{hs: map[string]*daemon{}, peer: peer}
	for _, name := range names {
		cert, key, err := ca.issue(name)
		if err == nil {
			net.hs[name], _, err = b.start(ctx, "--server-name", name, "--federation-listen", addrs[name],
				"--tls-cert", cert, "--tls-key", key, "--ca-file", ca.file, "--federation-servers", strings.Join(table, ","),
				"--federation-allow-networks", "127.0.0.0/8,::1/128")
		}
		if err != nil {
			peer.close()
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
	}
	return net, nil
}

// createPublicRoom creates a public room, with an alias if alias is set.
func (b *bench) createPublicRoom(ctx context.Context, u *user, alias string) (string, error) {
	body := map[string]any{"preset": "public_chat"}
	if alias != "" {
		body["room_alias_name"] = alias
	}
	var out struct {
		RoomID string `json:"room_id"`
	}
	err := call(ctx, b.hc, u.d, "POST", "/_matrix/client/v3/createRoom", u.token, body, &out, reqTimeout)
	return out.RoomID, err
}

// fedLatency: alice@hs1 makes a public room, bob@hs2 joins it by alias
// and long-polls /sync; alice sends -fed-msgs messages -fed-interval
// apart. Latency is from just before alice's PUT /send to the moment
// bob's /sync answer holding it is decoded. One warm-up message (first
// connection, key fetch) goes first and is not counted.
func fedLatency(ctx context.Context, b *bench, net *fedNet, metric string) row {
	fail := func(err error) row { return errRow(metric, fedLatencyTarget, err) }
	hs1, hs2 := net.hs["hs1.bench"], net.hs["hs2.bench"]
	alice, err := b.register(ctx, hs1, "alice")
	if err != nil {
		return fail(err)
	}
	bob, err := b.register(ctx, hs2, "bob")
	if err != nil {
		return fail(err)
	}
	roomID, err := b.createPublicRoom(ctx, alice, "latency")
	if err != nil {
		return fail(err)
	}
	if err := b.join(ctx, bob, "#latency:hs1.bench"); err != nil {
		return fail(fmt.Errorf("bob@hs2 joins #latency:hs1.bench: %w", err))
	}
	msgs := b.cfg.fedMsgs
	lat, cpuUse, err := timeDelivery(ctx, b, alice, bob, roomID, "fed", msgs, b.cfg.fedInterval, hs1.pid)
	if err != nil {
		return fail(err)
	}
	v := fmt.Sprintf("%s / %s (max %s; hs1 %s)", msNum(pct(lat, 50)), ms(pct(lat, 95)), ms(lat[len(lat)-1]), strings.TrimPrefix(cpuUse, "CPU: "))
	out := row{metric: metric, value: v, target: fedLatencyTarget,
		nums: figs(fig("p50", msF(pct(lat, 50)), "ms"), fig("p95", msF(pct(lat, 95)), "ms"))}
	if missing := msgs - len(lat); missing > 0 {
		out.value += fmt.Sprintf("; PROBLEM: %d of %d never reached bob", missing, msgs)
		out.failed = true
	}
	return out
}

// timeDelivery times msgs messages from alice to bob in roomID (both
// joined): bob long-polls /sync; alice sends "PREFIX N" interval apart.
// Latency is from just before alice's PUT /send to the moment bob's /sync
// answer holding it is decoded. One warm-up message (first connection,
// key fetch) goes first and is not counted. It returns the latencies of
// the messages that arrived, sorted, and the CPU use of senderPid and the
// bench while sending; an error if none arrived.
func timeDelivery(ctx context.Context, b *bench, alice, bob *user, roomID, prefix string, msgs int, interval time.Duration, senderPid int) ([]time.Duration, string, error) {
	r, err := b.sync(ctx, bob, "", syncFilter, 0)
	if err != nil {
		return nil, "", err
	}
	recv := make([]time.Time, msgs+1) // index msgs is the warm-up
	warm := make(chan struct{})
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var recvErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		since, got := r.NextBatch, 0
		for got < msgs+1 && pctx.Err() == nil {
			r, err := b.sync(pctx, bob, since, syncFilter, 30*time.Second)
			if err != nil {
				if pctx.Err() == nil {
					recvErr = err
				}
				return
			}
			now := time.Now()
			since = r.NextBatch
			for _, ev := range r.Rooms.Join[roomID].Timeline.Events {
				seq, err := strconv.Atoi(strings.TrimPrefix(ev.Content.Body, prefix+" "))
				if ev.Type != "m.room.message" || err != nil || seq < 0 || seq > msgs || !recv[seq].IsZero() {
					continue
				}
				recv[seq] = now
				if got++; seq == msgs {
					close(warm)
				}
			}
		}
	}()
	if _, err := b.send(ctx, alice, roomID, fmt.Sprintf("%s %d", prefix, msgs)); err != nil {
		return nil, "", err
	}
	select {
	case <-warm:
	case <-time.After(30 * time.Second):
		cancel()
		wg.Wait()
		return nil, "", fmt.Errorf("the warm-up message never reached %s (%v)", bob.id, recvErr)
	}
	cpu := startCPU(senderPid)
	sent := make([]time.Time, msgs)
	for seq := range msgs {
		sent[seq] = time.Now()
		if _, err := b.send(ctx, alice, roomID, fmt.Sprintf("%s %d", prefix, seq)); err != nil {
			return nil, "", err
		}
		if err := sleep(ctx, interval); err != nil {
			return nil, "", err
		}
	}
	cpuUse := cpu.String()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	cancel()
	<-done
	var lat []time.Duration
	for seq := range msgs {
		if !recv[seq].IsZero() {
			lat = append(lat, recv[seq].Sub(sent[seq]))
		}
	}
	if len(lat) == 0 {
		return nil, "", fmt.Errorf("no message reached %s (%v)", bob.id, recvErr)
	}
	slices.Sort(lat)
	return lat, cpuUse, nil
}

// fedIngest: the peer joins @p:peer.bench to a public room of alice's on
// hs1, builds and signs -fed-pdus messages (each on top of the previous)
// and the requests of their transactions of 50 (signTxn: a sender's own
// work, done before the clock starts), then sends them, each after the
// previous one's 200, as one server's outbound queue would. The rate is PDUs over the
// time from the first send to the last 200. Afterwards alice must be
// able to read every one of them on hs1.
func fedIngest(ctx context.Context, b *bench, net *fedNet, metric string) row {
	fail := func(err error) row { return errRow(metric, fedIngestTarget, err) }
	const hs = "hs1.bench"
	hs1 := net.hs[hs]
	alice, err := b.register(ctx, hs1, "alice-ingest")
	if err != nil {
		return fail(err)
	}
	roomID, err := b.createPublicRoom(ctx, alice, "")
	if err != nil {
		return fail(err)
	}
	rm, err := net.peer.joinRoom(ctx, hs, "p", roomID)
	if err != nil {
		return fail(fmt.Errorf("peer joins %s on hs1: %w", roomID, err))
	}
	n := b.cfg.fedPDUs
	t := time.Now()
	pdus := make([]gomatrixserverlib.PDU, n)
	sender := "@p:" + string(net.peer.name)
	for i := range n {
		if pdus[i], err = net.peer.build(rm, sender, "m.room.message", nil,
			map[string]string{"msgtype": "m.text", "body": fmt.Sprintf("ingest %d", i)}); err != nil {
			return fail(err)
		}
	}
	const perTxn = 50
	var txns []signedTxn
	for i := 0; i < n; i += perTxn {
		st, err := net.peer.signTxn(hs, pdus[i:min(i+perTxn, n)])
		if err != nil {
			return fail(err)
		}
		txns = append(txns, st)
	}
	b.logf("peer built and signed %d events in %d transactions in %s", n, len(txns), time.Since(t).Round(time.Millisecond))

	cpu := startCPU(hs1.pid)
	var txnLat []time.Duration
	refused := 0
	t0 := time.Now()
	for i, st := range txns {
		ts := time.Now()
		bad, err := net.peer.sendSigned(ctx, st)
		if err != nil {
			return fail(fmt.Errorf("transaction %d: %w", i, err))
		}
		refused += bad
		txnLat = append(txnLat, time.Since(ts))
	}
	elapsed := time.Since(t0)
	cpuUse := cpu.String()

	got, err := b.countMessages(ctx, alice, roomID, "ingest ")
	if err != nil {
		return fail(fmt.Errorf("reading the room back: %w", err))
	}
	v := fmt.Sprintf("%.0f PDUs/s (%d PDUs in %d txns, %s; txn p50 %s, p95 %s; hs1 %s)", float64(n)/elapsed.Seconds(), n,
		len(txnLat), elapsed.Round(time.Millisecond), ms(pct(txnLat, 50)), ms(pct(txnLat, 95)), strings.TrimPrefix(cpuUse, "CPU: "))
	out := row{metric: metric, value: v, target: fedIngestTarget, nums: figs(fig("", float64(n)/elapsed.Seconds(), "PDUs/s"))}
	if refused > 0 || got != n {
		out.value += fmt.Sprintf("; PROBLEM: %d refused, alice reads %d of %d on hs1", refused, got, n)
		out.failed = true
	}
	return out
}

// countMessages pages back through the whole room with /messages and
// counts the m.room.message events whose body starts with prefix.
func (b *bench) countMessages(ctx context.Context, u *user, roomID, prefix string) (int, error) {
	n, from := 0, ""
	for page := 0; page < 1000; page++ {
		var out struct {
			Chunk []struct {
				Type    string `json:"type"`
				Content struct {
					Body string `json:"body"`
				} `json:"content"`
			} `json:"chunk"`
			End string `json:"end"`
		}
		q := url.Values{"dir": {"b"}, "limit": {"1000"}}
		if from != "" {
			q.Set("from", from)
		}
		if err := call(ctx, b.hc, u.d, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages?"+q.Encode(),
			u.token, nil, &out, reqTimeout); err != nil {
			return n, err
		}
		for _, ev := range out.Chunk {
			if ev.Type == "m.room.message" && strings.HasPrefix(ev.Content.Body, prefix) {
				n++
			}
		}
		if out.End == "" || len(out.Chunk) == 0 {
			return n, nil
		}
		from = out.End
	}
	return n, fmt.Errorf("more than 1000 pages")
}

// fedJoin: the peer hosts a public room of -fed-members members (an admin
// and users @u1… of its own, every event signed by it); carol@hs3 joins
// it with POST /join/{roomId}?server_name=peer.bench. hs3 has done
// nothing else, so its VmHWM after the join is the join's peak. The
// figure is the wall time of that call; afterwards hs3 must list every
// member and carol as joined.
func fedJoin(ctx context.Context, b *bench, net *fedNet, metric string) row {
	fail := func(err error) row { return errRow(metric, fedJoinTarget, err) }
	hs3 := net.hs["hs3.bench"]
	members := b.cfg.fedMembers
	t := time.Now()
	rm, err := net.peer.hostRoom(members - 1) // plus the admin
	if err != nil {
		return fail(fmt.Errorf("peer builds its room: %w", err))
	}
	b.logf("peer built a room of %d members in %s", members, time.Since(t).Round(time.Millisecond))
	carol, err := b.register(ctx, hs3, "carol")
	if err != nil {
		return fail(err)
	}
	hwm0, err := memKB(hs3.pid, "VmHWM")
	if err != nil {
		return fail(err)
	}
	cpu := startCPU(hs3.pid)
	t0 := time.Now()
	err = call(ctx, b.hc, hs3, "POST", "/_matrix/client/v3/join/"+url.PathEscape(rm.id)+"?server_name="+string(net.peer.name),
		carol.token, map[string]any{}, nil, 3*time.Minute)
	took := time.Since(t0)
	cpuUse := cpu.String()
	if err != nil {
		return fail(fmt.Errorf("carol@hs3 joins %s after %s: %w", rm.id, took.Round(time.Millisecond), err))
	}
	hwm1, err := memKB(hs3.pid, "VmHWM")
	if err != nil {
		return fail(err)
	}
	rss, _ := rssDetail(hs3.pid)
	var jm struct {
		Joined map[string]any `json:"joined"`
	}
	if err := call(ctx, b.hc, hs3, "GET", "/_matrix/client/v3/rooms/"+url.PathEscape(rm.id)+"/joined_members",
		carol.token, nil, &jm, reqTimeout); err != nil {
		return fail(fmt.Errorf("joined_members after the join: %w", err))
	}
	v := fmt.Sprintf("%s / %s (VmHWM; %s before; RSS after %s; hs3 %s)", took.Round(time.Millisecond), mb(hwm1), mb(hwm0),
		rss, strings.TrimPrefix(cpuUse, "CPU: "))
	out := row{metric: metric, value: v, target: fedJoinTarget,
		nums: figs(fig("time", took.Seconds(), "s"), fig("peak", mibF(hwm1), "MiB"))}
	_, carolIn := jm.Joined[carol.id]
	if len(jm.Joined) != members+1 || !carolIn {
		out.value += fmt.Sprintf("; PROBLEM: hs3 lists %d joined members (want %d, carol in: %v)", len(jm.Joined), members+1, carolIn)
		out.failed = true
	}
	return out
}
