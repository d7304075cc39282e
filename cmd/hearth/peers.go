package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hearth-chat/hearth/localapi/control"
)

// peersCmd is `hearth peers [--json]`: the other Hearth daemons LAN
// discovery found on the local network ("people nearby"); `hearth peers
// forget NAME`: delete a peer's pinned key; `hearth peers mode
// on|browse|off`: switch LAN discovery; `hearth peers accept NAME` /
// `hearth peers refuse NAME`: the owner's answer to a key change.
func peersCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "forget":
			return peersForgetCmd(args[1:], stdout, stderr)
		case "accept":
			return peersDecideCmd(args[1:], true, stdout, stderr)
		case "refuse":
			return peersDecideCmd(args[1:], false, stdout, stderr)
		case "mode":
			return peersModeCmd(args[1:], stdout, stderr)
		}
	}
	var asJSON *bool
	cfg, code := loadConfig("peers", args, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
	})
	if code != 0 {
		return code
	}
	err := withControl(cfg, func(c ctlClient) error {
		st, err := c.Peers(context.Background())
		if err != nil {
			return err
		}
		if *asJSON {
			printJSON(stdout, st)
			return nil
		}
		printPeers(stdout, st)
		return nil
	})
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

func printPeers(w io.Writer, st *control.PeersStatus) {
	switch {
	case !st.Enabled:
		fmt.Fprintln(w, "LAN discovery is off (lan_discovery = off)")
		return
	case len(st.Peers) == 0:
		fmt.Fprintln(w, "no other Hearth on the local network")
		return
	}
	fmt.Fprintf(w, "%-30s %-28s %-9s %s\n", "SERVER", "ADDRESS", "SEEN", "STATE")
	for _, p := range st.Peers {
		// Discovery routes LAN-only names (.local or dotless) with their
		// pinned key, and public names with the key the internet gave for
		// them, at an address on this machine's networks.
		state := "not routed (no address on this network)"
		switch {
		case p.InternetKey == "mismatch":
			state = "KEY MISMATCH: announces " + p.KeyID + " but the internet gave another key for this name; not routed"
		case p.InternetKey == "unconfirmed":
			state = "not routed: public name whose key this server has not learned from the internet yet"
		case p.KeyChanged && p.KeyRefused:
			state = "key changed, refused: announces a key you chose to keep refusing; not routed ('hearth peers accept " + p.ServerName + "' accepts it)"
		case p.KeyChanged:
			state = "KEY CHANGED: announces " + p.KeyID + " but another key was pinned; not routed. " +
				"'hearth peers accept " + p.ServerName + "' accepts the new key (a reinstall), 'hearth peers refuse " + p.ServerName + "' keeps refusing it"
		case p.TLSKey == "" && p.Route == "" && strings.HasSuffix(p.ServerName, ".local"):
			state = "not routed: its announcement does not bind its certificate to its signing key"
		case p.Route != "":
			state = "federation goes to " + p.Route
		}
		fmt.Fprintf(w, "%-30s %-28s %-9s %s\n", p.ServerName, strings.Join(p.Addrs, ","),
			time.Since(p.LastSeen).Round(time.Second).String()+" ago", state)
	}
	printPeople(w, st.Peers)
}

// peersForgetCmd is `hearth peers forget NAME`: the pin of NAME's signing
// key is deleted, so its next announcement is trusted on first use (how
// to accept a peer's new key after a reinstall).
func peersForgetCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: hearth peers forget SERVER_NAME [flags]")
		return 2
	}
	name := args[0]
	cfg, code := loadConfig("peers forget", args[1:], stderr, nil)
	if code != 0 {
		return code
	}
	err := withControl(cfg, func(c ctlClient) error {
		_, err := c.ForgetPeer(context.Background(), name)
		return err
	})
	if err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintf(stdout, "forgot the key of %s; its next announcement is trusted on first use\n", name)
	return 0
}

// peersDecideCmd is `hearth peers accept NAME` and `hearth peers refuse
// NAME`: accept pins the key NAME announces now in place of the old one
// (after a reinstall); refuse keeps refusing it and stops flagging it,
// until NAME announces yet another key.
func peersDecideCmd(args []string, accept bool, stdout, stderr io.Writer) int {
	verb := map[bool]string{true: "accept", false: "refuse"}[accept]
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "usage: hearth peers %s SERVER_NAME [flags]\n", verb)
		return 2
	}
	name := args[0]
	cfg, code := loadConfig("peers "+verb, args[1:], stderr, nil)
	if code != 0 {
		return code
	}
	err := withControl(cfg, func(c ctlClient) error {
		_, err := c.DecidePeerKey(context.Background(), name, accept)
		return err
	})
	if err != nil {
		return fail(stderr, err)
	}
	if accept {
		fmt.Fprintf(stdout, "accepted the new key of %s; federation to it goes over the LAN again\n", name)
	} else {
		fmt.Fprintf(stdout, "still refusing the new key of %s; it will not be flagged again unless its key changes again\n", name)
	}
	return 0
}
