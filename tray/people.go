package tray

import (
	"context"
	"fmt"

	"github.com/hearth-chat/hearth/localapi/control"
)

// peerLister is the control client's peer list (controlclient.Client has
// it); a Control without it shows the count alone.
type peerLister interface {
	Peers(ctx context.Context) (*control.PeersStatus, error)
}

// maxTrayPeople bounds the people named in the menu label.
const maxTrayPeople = 3

// nearbyTitle is the people-nearby label: the people that peers announce
// when there are some ("People nearby: Anna (anna-laptop-…)"), else how
// many Hearths are nearby.
func (t *Tray) nearbyTitle(ctx context.Context, peers int) string {
	if l, ok := t.ctl.(peerLister); ok && peers > 0 {
		if st, err := l.Peers(ctx); err == nil {
			if s := control.PeopleNearby(st.Peers, maxTrayPeople); s != "" {
				return s
			}
		}
	}
	return fmt.Sprintf("People nearby: %d", peers)
}
