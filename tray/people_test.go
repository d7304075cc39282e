package tray

import (
	"context"
	"testing"

	"github.com/hearth-chat/hearth/localapi/control"
)

// peersOnly answers the tray's peer list; the rest of Control is unused
// by nearbyTitle (the full tray runs over D-Bus in internal/e2e).
type peersOnly struct {
	Control
	st control.PeersStatus
}

func (p peersOnly) Peers(context.Context) (*control.PeersStatus, error) { return &p.st, nil }

// TestTrayNamesPeopleNearby: the label names the people peers announce,
// and counts Hearths when none announces anyone.
func TestTrayNamesPeopleNearby(t *testing.T) {
	tr := &Tray{ctl: peersOnly{st: control.PeersStatus{Enabled: true, Peers: []control.Peer{
		{ServerName: "anna-laptop-t4bori.local", People: []control.Person{{UserID: "@anna:anna-laptop-t4bori.local", DisplayName: "Anna"}}},
	}}}}
	if got, want := tr.nearbyTitle(context.Background(), 1), "People nearby: Anna (anna-laptop-…)"; got != want {
		t.Errorf("with Anna announced: %q, want %q", got, want)
	}
	tr.ctl = peersOnly{st: control.PeersStatus{Enabled: true, Peers: []control.Peer{{ServerName: "quiet.local"}}}}
	if got, want := tr.nearbyTitle(context.Background(), 1), "People nearby: 1"; got != want {
		t.Errorf("no one announced: %q, want %q", got, want)
	}
}
