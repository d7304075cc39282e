package matrix_test

import (
	"fmt"
	"net/url"
	"testing"
)

// A timeline limit of a billion, inline or in a stored filter, is clamped
// to 100 events: the timeline is limited and can be paged back from its
// prev_batch.
func TestSyncTimelineLimitClamped(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	roomID := ts.createRoom(t, alice, nil)
	const clamp = 100
	for i := range clamp + 10 {
		ts.send(t, alice, roomID, fmt.Sprint("t", i), fmt.Sprint("message ", i))
	}
	const huge = `{"room":{"timeline":{"limit":1000000000}}}`
	r := ts.do(t, "POST", v3path+"/user/"+url.PathEscape(alice.ID)+"/filter", alice.Token, []byte(huge))
	r.wantStatus(t, 200)
	stored := r.str(t, "filter_id")

	for name, param := range map[string]string{"inline": huge, "stored": stored} {
		t.Run(name, func(t *testing.T) {
			tl := joinedIn(t, syncWith(t, ts, alice, param), roomID)["timeline"].(map[string]any)
			evs := tl["events"].([]any)
			if len(evs) != clamp || tl["limited"] != true {
				t.Fatalf("timeline limit 1e9: %d events, limited %v; want %d, limited", len(evs), tl["limited"], clamp)
			}
			if pb, _ := tl["prev_batch"].(string); pb == "" {
				t.Fatal("no prev_batch to page back from")
			}
			last := evs[len(evs)-1].(map[string]any)["content"].(map[string]any)["body"]
			if last != fmt.Sprint("message ", clamp+9) {
				t.Fatalf("the newest event is %v, want the last message", last)
			}
		})
	}
	// The stored filter reads back as the client wrote it.
	r = ts.do(t, "GET", v3path+"/user/"+url.PathEscape(alice.ID)+"/filter/"+stored, alice.Token, nil)
	r.wantStatus(t, 200)
	if tl := r.json(t)["room"].(map[string]any)["timeline"].(map[string]any); tl["limit"] != float64(1000000000) {
		t.Fatalf("stored filter reads back as %v", tl)
	}
}
