package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Transactions and request authentication from the test peer.

// TestForgedTransactionsFromPeer: a transaction over the spec's 50
// PDUs gets 400 and stores none of them (50 go through); a replayed
// transaction ID gets the first answer again and adds nothing; a
// transaction claiming another origin than its signer is refused.
func TestForgedTransactionsFromPeer(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	room := string(s.roomID)
	p := s.peer
	sendPath := "/_matrix/federation/v1/send/"
	txnOf := func(origin string, pdus ...gomatrixserverlib.PDU) gomatrixserverlib.Transaction {
		return gomatrixserverlib.Transaction{Origin: spec.ServerName(origin), OriginServerTS: spec.AsTimestamp(time.Now()), PDUs: raws(pdus...)}
	}

	// The transaction's origin must be its signer.
	otherOrigin := p.message(room, "forged: another origin")
	code, answer := p.do("PUT", p.hs, sendPath+p.txnID(), txnOf("hs2.test", otherOrigin), true)
	if code != http.StatusForbidden {
		t.Errorf("/send whose origin is not its signer: HTTP %d %s, want 403", code, answer)
	}
	s.judge(t, "another origin", []string{otherOrigin.EventID()}, "forged: another origin")

	// 51 PDUs: 400 and nothing stored. Each event builds on the one
	// before, so the count is the only thing wrong.
	many := s.chain(t, 51, "forged: one of 51")
	code, answer = p.do("PUT", p.hs, sendPath+p.txnID(), txnOf(peerName, many...), true)
	if code != http.StatusBadRequest {
		t.Errorf("/send of 51 PDUs: HTTP %d %s, want 400", code, answer)
	}
	var manyIDs []string
	for _, pdu := range many {
		manyIDs = append(manyIDs, pdu.EventID())
	}
	s.judge(t, "51 PDUs", manyIDs, "forged: one of 51")
	fifty := s.chain(t, 50, "one of 50")
	s.sendOK(t, s.roomID, fifty...)
	s.syncUntilEvent(t, s.roomID, fifty[49].EventID())

	// Replay: the same transaction ID again, same body and then another
	// body, gets the first answer and changes nothing.
	first := p.message(room, "sent once")
	txn := p.txnID()
	code, res1 := p.sendTxn(txn, first.JSON())
	if code != http.StatusOK || res1[first.EventID()].Error != "" {
		t.Fatalf("first /send %s: HTTP %d %+v", txn, code, res1)
	}
	p.accepted(room, first)
	code, res2 := p.sendTxn(txn, first.JSON())
	if code != http.StatusOK || !sameResults(res1, res2) {
		t.Errorf("replayed /send %s: HTTP %d %+v, want the first answer %+v", txn, code, res2, res1)
	}
	swapped := p.message(room, "forged: replayed transaction ID")
	code, res3 := p.sendTxn(txn, swapped.JSON())
	if code != http.StatusOK || !sameResults(res1, res3) {
		t.Errorf("/send %s again with another event: HTTP %d %+v, want the first answer %+v", txn, code, res3, res1)
	}
	s.judge(t, "replayed transaction", []string{swapped.EventID()}, "forged: replayed transaction ID")
	n := 0
	for _, ev := range History(t, s.alice, s.roomID, "", 100) {
		if body(ev) == "sent once" {
			n++
		}
		if strings.HasPrefix(body(ev), "forged:") {
			t.Errorf("forged body %q is in /messages", body(ev))
		}
	}
	if n != 1 {
		t.Errorf("a replayed transaction's message is in /messages %d times, want once", n)
	}
}

// chain builds n messages, each on the one before, starting at the
// peer's latest event; the peer's view is left as it was.
func (s *peerScene) chain(t *testing.T, n int, label string) []gomatrixserverlib.PDU {
	t.Helper()
	var out []gomatrixserverlib.PDU
	var prev gomatrixserverlib.PDU
	for i := range n {
		es := evSpec{Type: "m.room.message", Content: map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("%s #%d", label, i)}}
		if prev != nil {
			es.Prevs, es.Depth = []string{prev.EventID()}, prev.Depth()+1
		}
		prev = s.peer.build(string(s.roomID), es)
		out = append(out, prev)
	}
	return out
}

func sameResults(a, b map[string]fclient.PDUResult) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestForgedRequestAuthFromPeer: a /send without an X-Matrix signature,
// or signed for another destination, gets 401 M_UNAUTHORIZED
// (Server-Server API §"Request Authentication": "If the destination does
// not match ... the receiving server must deny the request with 401")
// and stores nothing.
func TestForgedRequestAuthFromPeer(t *testing.T) {
	t.Parallel()
	s := startPeerScene(t)
	room := string(s.roomID)
	p := s.peer
	var wrong []string
	for _, c := range []struct {
		what, destination string
		signed            bool
	}{
		{"forged: unsigned request", "hs1.test", false},
		{"forged: signed for hs2.test", "hs2.test", true},
	} {
		ev := p.message(room, c.what)
		txn := gomatrixserverlib.Transaction{Origin: peerName, OriginServerTS: spec.AsTimestamp(time.Now()), PDUs: raws(ev)}
		code, answer := p.do("PUT", spec.ServerName(c.destination), "/_matrix/federation/v1/send/"+p.txnID(), txn, c.signed)
		if code/100 == 2 {
			t.Fatalf("%s: HTTP %d %s, want 401 M_UNAUTHORIZED", c.what, code, answer)
		}
		if code != http.StatusUnauthorized || errcode(answer) != "M_UNAUTHORIZED" {
			wrong = append(wrong, fmt.Sprintf("%s: HTTP %d %s", c.what, code, strings.TrimSpace(string(answer))))
		}
		s.judge(t, c.what, []string{ev.EventID()}, c.what)
	}
	if len(wrong) > 0 {
		t.Fatalf("refused, but not as the spec says: want 401 M_UNAUTHORIZED, got:\n%s", strings.Join(wrong, "\n"))
	}
}
