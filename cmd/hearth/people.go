package main

import (
	"context"
	"fmt"
	"io"

	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
)

// Peers gives the tray (tray/people.go) the peer list, for the people they announce.
func (e endpointControl) Peers(ctx context.Context) (*control.PeersStatus, error) {
	return call(e, func(c *controlclient.Client) (*control.PeersStatus, error) { return c.Peers(ctx) })
}

// printPeople ends `hearth peers` with the people that peers announce
// (those opted in with 'hearth account nearby NAME on' on their side).
func printPeople(w io.Writer, peers []control.Peer) {
	if s := control.PeopleNearby(peers, 50); s != "" {
		fmt.Fprintln(w, s)
	}
}
