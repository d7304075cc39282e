package matrix

// Exports for the external tests (package matrix_test) of unexported
// token code.

// ParseSyncToken is parseSyncToken with the token's parts spelled out.
func ParseSyncToken(s string) (pos, eph uint64, err error) {
	t, err := parseSyncToken(s)
	return t.pos, t.eph, err
}

// SyncToken is the since token the server hands out for (pos, eph).
func SyncToken(pos, eph uint64) string { return syncToken{pos, eph}.String() }

// ParsePageToken is parsePageToken.
var ParsePageToken = parsePageToken

// PageToken is the pagination token the server hands out for pos.
var PageToken = pageToken
