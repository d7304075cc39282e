package matrix

import (
	"net/url"
	"strings"
)

// The query parameters of GET /sync (Client-Server API §"GET
// /_matrix/client/v3/sync"), as indexes into syncParams.
const (
	qSince = iota
	qTimeout
	qFilter
	qSetPresence
	qFullState
	qStateAfter
	qStateAfterUnstable // MSC4222's unstable name
	qCount
)

var syncParamNames = [qCount]string{"since", "timeout", "filter", "set_presence", "full_state",
	"use_state_after", "org.matrix.msc4222.use_state_after"}

// syncParams holds each /sync parameter's first value, as url.Values.Get
// would return it.
type syncParams [qCount]string

// parseSyncParams reads the parameters /sync uses from a raw query in
// one pass, with url.ParseQuery's rules: pairs split at '&', a pair with
// a ';' or a bad escape skipped, '+' a space, a key's first value the one
// taken. Every long poll reads its query, and url.Values built a map and
// unescaped every key and value for the few read here.
func parseSyncParams(raw string) syncParams {
	var p syncParams
	var seen [qCount]bool
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		key, ok := unescapeQuery(key)
		if !ok {
			continue
		}
		for i, name := range syncParamNames {
			if key != name {
				continue
			}
			if v, ok := unescapeQuery(value); ok && !seen[i] {
				p[i], seen[i] = v, true
			}
			break
		}
	}
	return p
}

// unescapeQuery is url.QueryUnescape without its allocation for text with
// nothing to unescape.
func unescapeQuery(s string) (string, bool) {
	if !strings.ContainsAny(s, "%+") {
		return s, true
	}
	v, err := url.QueryUnescape(s)
	return v, err == nil
}
