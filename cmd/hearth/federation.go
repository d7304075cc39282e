package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/hearth-chat/hearth/localapi/control"
)

// federationCmd is `hearth federation [pause|resume|mode off|lan|internet]
// [--json]`: the federation side's state and the other servers it sends
// to; pausing; switching the mode.
func federationCmd(args []string, stdout, stderr io.Writer) int {
	action, mode := "", ""
	if len(args) > 0 && (args[0] == "pause" || args[0] == "resume") {
		action, args = args[0], args[1:]
	}
	if len(args) > 0 && args[0] == "mode" {
		if len(args) < 2 || fedModeWords[args[1]] == "" {
			fmt.Fprintln(stderr, "usage: hearth federation mode off|lan|internet")
			return 2
		}
		action, mode, args = "mode", args[1], args[2:]
	}
	var asJSON *bool
	cfg, code := loadConfig("federation", args, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
	})
	if code != 0 {
		return code
	}
	err := withControl(cfg, func(c ctlClient) error {
		ctx := context.Background()
		var st *control.FederationStatus
		var err error
		switch action {
		case "":
			st, err = c.Federation(ctx)
		case "mode":
			st, err = c.SetFederationMode(ctx, mode)
		default:
			st, err = c.PauseFederation(ctx, action == "pause")
		}
		if err != nil {
			return err
		}
		if *asJSON {
			printJSON(stdout, st)
			return nil
		}
		printFederation(stdout, st)
		return nil
	})
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

// fedModeWords says what each federation mode means, for people.
var fedModeWords = map[string]string{
	"off":      "off: this Hearth talks only to its own users",
	"lan":      "lan: servers on this machine's networks (self-signed certificate, trusted through the signing key)",
	"internet": "internet: any server (CA certificate)",
}

func printFederation(w io.Writer, st *control.FederationStatus) {
	fmt.Fprintln(w, "mode         "+fedModeWords[st.Mode])
	if st.RestartRequired {
		fmt.Fprintf(w, "             the config now says %s: restart Hearth to apply it\n", st.Configured)
	}
	if st.CertificateSHA256 != "" {
		fmt.Fprintln(w, "certificate  sha256 of its public key: "+st.CertificateSHA256)
	}
	switch {
	case !st.Enabled:
		fmt.Fprintln(w, "federation   off (switch it on with 'hearth federation mode lan')")
		return
	case st.Paused:
		fmt.Fprintln(w, "federation   paused (resume with 'hearth federation resume')")
	default:
		fmt.Fprintln(w, "federation   on, listening on "+st.Listen)
	}
	if len(st.Destinations) == 0 {
		fmt.Fprintln(w, "no other servers yet")
		return
	}
	fmt.Fprintf(w, "%-30s %7s %8s  %s\n", "SERVER", "QUEUED", "FAILURES", "STATE")
	for _, d := range st.Destinations {
		state := "ok"
		switch {
		case !d.NextTry.IsZero() && d.NextTry.After(time.Now()):
			state = "retry in " + time.Until(d.NextTry).Round(time.Second).String() + ": " + d.LastError
		case d.LastError != "":
			state = d.LastError
		case d.LastSent.IsZero():
			state = "nothing sent yet"
		}
		fmt.Fprintf(w, "%-30s %7d %8d  %s\n", d.Name, d.Queued, d.Failures, state)
	}
}
