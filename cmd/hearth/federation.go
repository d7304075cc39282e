package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/hearth-chat/hearth/localapi/control"
)

// federationCmd is `hearth federation [pause|resume] [--json]`: the
// federation side's state and the other servers it sends to.
func federationCmd(args []string, stdout, stderr io.Writer) int {
	action := ""
	if len(args) > 0 && (args[0] == "pause" || args[0] == "resume") {
		action, args = args[0], args[1:]
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

func printFederation(w io.Writer, st *control.FederationStatus) {
	switch {
	case !st.Enabled:
		fmt.Fprintln(w, "federation   off (set federation_listen, tls_cert and tls_key)")
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
