package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// benchAppservice measures application services (issue 16): the latency
// from a human's PUT /send to the transaction reaching the appservice (an
// HTTP endpoint in the bench process, on loopback, registered through
// `hearth appservice add`), the events/s 100 ghosts of one bridge send
// into one portal room with the as_token, and the daemon's RSS per
// registered appservice (50 more registered).
func benchAppservice(ctx context.Context, b *bench) []row {
	n := min(b.cfg.sends, 500)
	latMetric := fmt.Sprintf("appservice: human send → transaction at the appservice, %d messages: p50 / p99", n)
	const latTarget = "p50 ≤ 5 ms"
	ghostMetric := fmt.Sprintf("appservice: 100 ghosts sending into one room with the as_token, %s", b.cfg.duration)
	memMetric := "appservice: RSS per registered appservice (50 registered)"
	fail := func(err error) []row {
		return []row{errRow(latMetric, latTarget, err), errRow(ghostMetric, "measure", err), errRow(memMetric, "measure", err)}
	}
	d, _, err := b.start(ctx)
	if err != nil {
		return fail(err)
	}
	defer b.stop(d)

	// The appservice: it notes when each message body arrives.
	var mu sync.Mutex
	waiting := map[string]chan time.Time{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var txn struct {
			Events []struct {
				Content struct{ Body string } `json:"content"`
			} `json:"events"`
		}
		json.NewDecoder(r.Body).Decode(&txn)
		now := time.Now()
		mu.Lock()
		for _, e := range txn.Events {
			if ch := waiting[e.Content.Body]; ch != nil {
				ch <- now
				delete(waiting, e.Content.Body)
			}
		}
		mu.Unlock()
		w.Write([]byte("{}"))
	})}
	go srv.Serve(ln)
	defer srv.Close()

	const asToken = "bench-as-token"
	reg := func(id, token string) string {
		return fmt.Sprintf("id: %s\nurl: http://%s\nas_token: %s\nhs_token: hs-%s\nsender_localpart: %sbot\nrate_limited: false\n"+
			"namespaces:\n  users:\n    - regex: '^@%s_.+:bench\\.local$'\n      exclusive: true\n", id, ln.Addr(), token, token, id, id)
	}
	if err := b.addAppservice(ctx, d, "bench", reg("bench", asToken)); err != nil {
		return fail(err)
	}
	// Memory per registered appservice, first, on a daemon that has done
	// nothing else yet (later the queue's work would be counted too).
	var memRow row
	before, err := memKB(d.pid, "VmRSS")
	if err != nil {
		return fail(err)
	}
	const more = 50
	for i := range more {
		id := fmt.Sprintf("m%d", i)
		if err := b.addAppservice(ctx, d, id, reg(id, "token-"+id)); err != nil {
			return fail(err)
		}
	}
	if after, err := memKB(d.pid, "VmRSS"); err != nil {
		memRow = errRow(memMetric, "measure", err)
	} else {
		memRow = row{metric: memMetric, value: fmt.Sprintf("%.1f KiB (RSS %s → %s)", float64(after-before)/more, mb(before), mb(after)),
			target: "measure", nums: figs(fig("", float64(after-before)/more, "KiB"))}
	}
	human, err := b.register(ctx, d, "human")
	if err != nil {
		return fail(err)
	}
	roomID, err := b.createRoom(ctx, human)
	if err != nil {
		return fail(err)
	}
	ghosts := make([]string, 100)
	err = parallel(len(ghosts), 8, func(i int) error {
		ghosts[i] = fmt.Sprintf("@bench_g%d:bench.local", i)
		body := map[string]any{"type": "m.login.application_service", "username": fmt.Sprintf("bench_g%d", i), "inhibit_login": true}
		if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/register", asToken, body, nil, reqTimeout); err != nil {
			return err
		}
		return call(ctx, b.hc, d, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?user_id="+url.QueryEscape(ghosts[i]),
			asToken, map[string]any{}, nil, reqTimeout)
	})
	if err != nil {
		return fail(err)
	}

	// Latency: each message waits for its arrival before the next.
	// The daemon's CPU per message (utime+stime over the timed ones) is
	// the steadier figure on a loaded machine.
	const warmup = 20
	lat := make([]time.Duration, 0, n)
	sendLat := make([]time.Duration, 0, n) // of which the PUT /send itself
	var ticks0 int64
	for i := 0; i < warmup+n; i++ {
		if i == warmup {
			ticks0, _ = cpuTicks(d.pid)
		}
		body := fmt.Sprintf("as-latency %d", i)
		ch := make(chan time.Time, 1)
		mu.Lock()
		waiting[body] = ch
		mu.Unlock()
		t0 := time.Now()
		if _, err := b.send(ctx, human, roomID, body); err != nil {
			return fail(err)
		}
		sent := time.Since(t0)
		select {
		case at := <-ch:
			if i >= warmup {
				lat = append(lat, at.Sub(t0))
				sendLat = append(sendLat, sent)
			}
		case <-time.After(10 * time.Second):
			return fail(fmt.Errorf("message %d never reached the appservice", i))
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
	ticks1, _ := cpuTicks(d.pid)
	rows := []row{memRow, {metric: latMetric, value: fmt.Sprintf("%s / %s (max %s; the PUT /send itself p50 %s; daemon CPU %.2f ms a message)",
		msNum(pct(lat, 50)), ms(pct(lat, 99)), msNum(lat[len(lat)-1]), ms(pct(sendLat, 50)), float64(ticks1-ticks0)/clockTicks*1000/float64(n)), target: latTarget,
		nums: figs(fig("p50", msF(pct(lat, 50)), "ms"), fig("p99", msF(pct(lat, 99)), "ms"))}}

	// Ghost-heavy bridge: every ghost sends back-to-back for the run.
	var sent atomic.Int64
	var first error
	var once sync.Once
	end := time.Now().Add(b.cfg.duration)
	start := time.Now()
	cpu := startCPU(d.pid)
	var wg sync.WaitGroup
	for i, g := range ghosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; time.Now().Before(end) && ctx.Err() == nil; j++ {
				path := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/send/m.room.message/g" + strconv.Itoa(i) + "-" +
					strconv.Itoa(j) + "?user_id=" + url.QueryEscape(g)
				if err := call(ctx, b.hc, d, "PUT", path, asToken, map[string]string{"msgtype": "m.text", "body": "bridged"}, nil, reqTimeout); err != nil {
					once.Do(func() { first = err })
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	if first != nil {
		rows = append(rows, errRow(ghostMetric, "measure", first))
	} else {
		rate := float64(sent.Load()) / time.Since(start).Seconds()
		rows = append(rows, row{metric: ghostMetric, value: fmt.Sprintf("%.0f events/s (%s)", rate, cpu), target: "measure",
			nums: figs(fig("", rate, "events/s"))})
	}

	return rows
}

// addAppservice registers an appservice with the running daemon through
// the CLI, as its owner would.
func (b *bench) addAppservice(ctx context.Context, d *daemon, id, registration string) error {
	file := filepath.Join(filepath.Dir(d.dataDir), id+".yaml")
	if err := os.WriteFile(file, []byte(registration), 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, b.cfg.hearth, "appservice", "add", file, "--data-dir", d.dataDir, "--server-name", "bench.local")
	cmd.Env = childEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hearth appservice add %s: %v: %s", id, err, strings.TrimSpace(string(out)))
	}
	return nil
}
