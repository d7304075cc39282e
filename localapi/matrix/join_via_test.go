package matrix_test

import (
	"net/url"
	"testing"
)

// TestJoinRefusesMalformedVia: a via (or server_name) that is not a
// server name, such as one with a non-numeric port, makes POST /join 400
// M_INVALID_PARAM, and the room does not change.
func TestJoinRefusesMalformedVia(t *testing.T) {
	b := newBadInputServer(t)
	before := b.snapshot(t, b.alice, b.roomID)
	for _, q := range []string{"via=localhost:http", "server_name=hs1.test:80a", "via=hs1.test&via=bad:port"} {
		r := b.do(t, "POST", v3+"/join/"+url.PathEscape(b.roomID)+"?"+q, b.bob.Token, map[string]any{})
		r.wantStatus(t, 400)
		if got := r.json(t)["errcode"]; got != "M_INVALID_PARAM" {
			t.Errorf("?%s: errcode %v, want M_INVALID_PARAM", q, got)
		}
	}
	before.wantSame(t, b.snapshot(t, b.alice, b.roomID))
}
