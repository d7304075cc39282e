package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hearth-chat/hearth/daemon"
	"github.com/hearth-chat/hearth/localapi/control"
)

// appserviceCmd manages application services (hearth appservice add FILE |
// list | remove ID): through the control API when Hearth runs, directly
// on the data file when it does not, as account commands do.
func appserviceCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "add" && args[0] != "list" && args[0] != "remove") {
		fmt.Fprint(stderr, usage)
		return 2
	}
	sub, rest := args[0], args[1:]
	var arg string
	if sub != "list" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			what := map[string]string{"add": "FILE", "remove": "ID"}[sub]
			fmt.Fprintf(stderr, "hearth appservice %s: %s is required\n", sub, what)
			return 2
		}
		arg, rest = rest[0], rest[1:]
	}
	cfg, code := loadConfig("appservice "+sub, rest, stderr, nil)
	if code != 0 {
		return code
	}
	var err error
	switch sub {
	case "add":
		data, rerr := os.ReadFile(arg)
		if rerr != nil {
			fmt.Fprintf(stderr, "hearth appservice add: %v\n", rerr)
			return 2
		}
		var id string
		if id, err = daemon.AddAppservice(cfg, data); errors.Is(err, daemon.ErrRunning) {
			err = withControl(cfg, func(c ctlClient) error {
				as, err := c.AddAppservice(context.Background(), string(data))
				id = as.ID
				return err
			})
		}
		if err == nil {
			fmt.Fprintf(stdout, "appservice %s registered\n", id)
		}
	case "remove":
		if err = daemon.RemoveAppservice(cfg, arg); errors.Is(err, daemon.ErrRunning) {
			err = withControl(cfg, func(c ctlClient) error { return c.RemoveAppservice(context.Background(), arg) })
		}
		if err == nil {
			fmt.Fprintf(stdout, "appservice %s removed\n", arg)
		}
	case "list":
		var list []control.Appservice
		if list, err = daemon.ListAppservices(cfg); errors.Is(err, daemon.ErrRunning) {
			err = withControl(cfg, func(c ctlClient) (err error) {
				list, err = c.Appservices(context.Background())
				return err
			})
		}
		for _, a := range list {
			fmt.Fprintf(stdout, "%s\t%s\t%s\tqueued %d", a.ID, a.SenderUserID, a.URL, a.Queued)
			if !a.LastSuccess.IsZero() {
				fmt.Fprintf(stdout, "\tlast ok %s", a.LastSuccess.Format("2006-01-02 15:04:05"))
			}
			if a.Dropped > 0 {
				fmt.Fprintf(stdout, "\tdropped %d (queue full)", a.Dropped)
			}
			if a.LastError != "" {
				fmt.Fprintf(stdout, "\tlast error: %s", a.LastError)
			}
			fmt.Fprintln(stdout)
		}
	}
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}
