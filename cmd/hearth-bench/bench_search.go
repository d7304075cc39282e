package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"
)

// searchVocab builds n distinct pronounceable words, so message bodies
// look like text to the tokeniser and word frequencies can follow Zipf's
// law as in real chat.
func searchVocab(n int) []string {
	cons, vows := "bcdfghklmnprstvz", "aeiou"
	words := make([]string, 0, n)
	for i := 0; len(words) < n; i++ {
		var sb strings.Builder
		for j, x := 0, i+1; x > 0 || j < 2; j++ {
			sb.WriteByte(cons[x%len(cons)])
			x /= len(cons)
			sb.WriteByte(vows[x%len(vows)])
			x /= len(vows)
		}
		words = append(words, sb.String())
	}
	return words
}

// benchSearch measures POST /search over -volume-msgs messages in 10
// rooms, one user. Bodies are 6–15 words drawn from a 5,000-word
// vocabulary with Zipf frequencies. After the last message (which holds a
// unique word) is findable, i.e. the index has caught up, it times 200
// rank-ordered searches for one word drawn uniformly from the vocabulary
// (median and p95) and 50 searches for the most common word, which hits
// a large share of all messages.
func benchSearch(ctx context.Context, b *bench) []row {
	n := b.cfg.volumeMsgs // the volume section's size: 100k, or 10k with -quick
	metric := fmt.Sprintf("POST /search over %s messages, one word (p50 of 200)", count(n))
	cMetric := fmt.Sprintf("POST /search over %s messages, the most common word (p50 of 50)", count(n))
	const target = "≤ 50 ms"
	fail := func(err error) []row { return []row{errRow(metric, target, err), errRow(cMetric, "(none)", err)} }
	d, _, err := b.start(ctx)
	if err != nil {
		return fail(err)
	}
	defer b.stop(d)
	u, err := b.register(ctx, d, "searcher")
	if err != nil {
		return fail(err)
	}
	rooms := make([]string, 10)
	for i := range rooms {
		if rooms[i], err = b.createRoom(ctx, u); err != nil {
			return fail(err)
		}
	}
	vocab := searchVocab(5000)
	var next atomic.Int64
	start := time.Now()
	err = parallel(b.cfg.workers, b.cfg.workers, func(w int) error {
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		zipf := rand.NewZipf(rng, 1.1, 1, uint64(len(vocab)-1))
		for {
			k := int(next.Add(1)) - 1
			if k >= n-1 {
				return nil
			}
			words := make([]string, 6+rng.IntN(10))
			for i := range words {
				words[i] = vocab[zipf.Uint64()]
			}
			if _, err := b.send(ctx, u, rooms[k%len(rooms)], strings.Join(words, " ")); err != nil {
				return err
			}
		}
	})
	if err != nil {
		return fail(err)
	}
	marker := fmt.Sprintf("zzfinal%d", time.Now().UnixNano())
	if _, err := b.send(ctx, u, rooms[0], "the last message "+marker); err != nil {
		return fail(err)
	}
	filled := time.Since(start)
	// Wait for the index to reach the last message. The server's consumer
	// is woken by each commit; the bench can only ask.
	for {
		found, _, err := b.search(ctx, u, marker)
		if err != nil {
			return fail(err)
		}
		if found > 0 {
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return fail(err)
		}
	}
	caughtUp := time.Since(start) - filled
	rng := rand.New(rand.NewPCG(1, 2))
	var ts, cts []time.Duration
	var hits int
	for range 200 {
		t := time.Now()
		found, _, err := b.search(ctx, u, vocab[rng.IntN(len(vocab))])
		if err != nil {
			return fail(err)
		}
		ts = append(ts, time.Since(t))
		hits += found
	}
	var common int
	for range 50 {
		t := time.Now()
		found, _, err := b.search(ctx, u, vocab[0])
		if err != nil {
			return fail(err)
		}
		cts = append(cts, time.Since(t))
		common = found
	}
	p50 := pct(ts, 50)
	return []row{
		{metric: metric, value: fmt.Sprintf("%s (p95 %s; mean %d hits; filled in %.0f s, index caught up %.1f s later)",
			ms(p50), msNum(pct(ts, 95)), hits/len(ts), filled.Seconds(), caughtUp.Seconds()), target: target, failed: p50 > 50*time.Millisecond,
			nums: figs(fig("p50", msF(p50), "ms"), fig("p95", msF(pct(ts, 95)), "ms"))},
		{metric: cMetric, value: fmt.Sprintf("%s (p95 %s; %d hits)", ms(pct(cts, 50)), msNum(pct(cts, 95)), common), target: "(none)",
			nums: figs(fig("p50", msF(pct(cts, 50)), "ms"), fig("p95", msF(pct(cts, 95)), "ms"))},
	}
}

// search runs one rank-ordered room_events search and returns the count
// the server reports and the number of results on the first page.
func (b *bench) search(ctx context.Context, u *user, term string) (count, page int, err error) {
	var out struct {
		SearchCategories struct {
			RoomEvents struct {
				Count   int   `json:"count"`
				Results []any `json:"results"`
			} `json:"room_events"`
		} `json:"search_categories"`
	}
	body := map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": term}}}
	err = call(ctx, b.hc, u.d, "POST", "/_matrix/client/v3/search", u.token, body, &out, reqTimeout)
	return out.SearchCategories.RoomEvents.Count, len(out.SearchCategories.RoomEvents.Results), err
}
