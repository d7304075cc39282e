package matrix

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
)

// TestParseSyncParams: the one-pass reader of /sync's query returns what
// url.Values.Get returns for each parameter, escapes, repeats, empty
// values, ';' and broken escapes included.
func TestParseSyncParams(t *testing.T) {
	queries := []string{
		"",
		"since=s5_2&timeout=30000&filter=%7B%22room%22%3A%7B%7D%7D",
		"timeout=&timeout=5",
		"since=a&since=b",
		"full_state=true&full_state=false",
		"set_presence=unavailable&access_token=secret",
		"filter=a+b%20c",
		"fil%74er=x",
		"since=%zz&since=ok",
		"timeout=1;2&timeout=3",
		"&&since=x&",
		"use_state_after=true&org.matrix.msc4222.use_state_after=true",
		"since",
		"since=a=b",
		"%zz=1&timeout=9",
	}
	// And random ones, from pieces that matter to the rules.
	pieces := []string{"since", "timeout", "filter", "set_presence", "full_state", "use_state_after",
		"org.matrix.msc4222.use_state_after", "x", "=", "&", ";", "%", "%2", "%20", "%7B", "+", "true", "a", ""}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		queries = append(queries, b.String())
	}
	for _, q := range queries {
		want, _ := url.ParseQuery(q)
		got := parseSyncParams(q)
		for i, name := range syncParamNames {
			if got[i] != want.Get(name) {
				t.Errorf("query %q: %s = %q, url.Values has %q", q, name, got[i], want.Get(name))
			}
		}
	}
}
