package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/localapi/control"
)

// TestPeersPrintsPeople: `hearth peers` names the people peers announce.
func TestPeersPrintsPeople(t *testing.T) {
	var b bytes.Buffer
	printPeers(&b, &control.PeersStatus{Enabled: true, Peers: []control.Peer{{ServerName: "anna-laptop-t4bori.local",
		LastSeen: time.Now(), People: []control.Person{{UserID: "@anna:anna-laptop-t4bori.local", DisplayName: "Anna"}}}}})
	if !strings.Contains(b.String(), "People nearby: Anna (anna-laptop-…)\n") {
		t.Errorf("hearth peers printed:\n%s", b.String())
	}
}
