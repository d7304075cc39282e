package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/hearth-chat/hearth/daemon"
	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
	"github.com/hearth-chat/hearth/packaging"
)

type ctlClient = *controlclient.Client

// withControl runs fn against the running daemon's control API.
func withControl(cfg daemon.Config, fn func(ctlClient) error) error {
	ep, err := daemon.Control(cfg)
	if err != nil {
		return err
	}
	return fn(controlclient.New(ep.Addr, ep.Socket, ep.Secret))
}

// fail prints err and returns the exit code that says what kind it is.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "hearth:", err)
	switch {
	case errors.Is(err, daemon.ErrRunning):
		return 3
	case errors.Is(err, controlclient.ErrNotRunning):
		return 4
	case errors.Is(err, daemon.ErrDataDir):
		return exitDataDir
	}
	return 1
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func statusCmd(args []string, stdout, stderr io.Writer) int {
	var asJSON *bool
	cfg, code := loadConfig("status", args, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
	})
	if code != 0 {
		return code
	}
	err := withControl(cfg, func(c ctlClient) error {
		st, err := c.Status(context.Background())
		if err != nil {
			return err
		}
		if *asJSON {
			printJSON(stdout, st)
			return nil
		}
		fmt.Fprintf(stdout, "Hearth %s, up %s\nserver name  %s\nclient API   %s\naccounts     %d\nstorage      %.1f MiB\nfederation   %s\nkeys         %s\n",
			st.Version, (time.Duration(st.UptimeSeconds) * time.Second).String(), st.ServerName, st.Listeners["client"],
			st.Accounts, float64(st.StorageBytes)/(1<<20), federationState(st), st.KeyStore)
		if st.KeyStoreWarning != "" {
			fmt.Fprintln(stdout, "warning      "+st.KeyStoreWarning)
		}
		if st.Reachable != nil {
			fmt.Fprintln(stdout, "reachable    "+map[bool]string{true: "yes, other servers can reach this one", false: "no: other servers cannot reach this one (see docs/federation.md)"}[*st.Reachable])
		}
		return nil
	})
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

func federationState(st *control.Status) string {
	if st.FederationPaused {
		return "paused (" + st.FederationMode + ")"
	}
	if !st.Federation {
		return "off"
	}
	return "on (" + st.FederationMode + ")"
}

func logsCmd(args []string, stdout, stderr io.Writer) int {
	var lines *int
	cfg, code := loadConfig("logs", args, stderr, func(fs *flag.FlagSet) {
		lines = fs.Int("lines", 100, "how many recent lines")
	})
	if code != 0 {
		return code
	}
	err := withControl(cfg, func(c ctlClient) error {
		out, err := c.Logs(context.Background(), *lines)
		for _, l := range out {
			fmt.Fprintln(stdout, l)
		}
		return err
	})
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

// configCmd reads and writes the running daemon's settings.
func configCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "get" && args[0] != "set") {
		fmt.Fprint(stderr, usage)
		return 2
	}
	sub, rest := args[0], args[1:]
	var pos []string
	for len(rest) > 0 && len(rest[0]) > 0 && rest[0][0] != '-' {
		pos, rest = append(pos, rest[0]), rest[1:]
	}
	var asJSON *bool
	cfg, code := loadConfig("config "+sub, rest, stderr, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
	})
	if code != 0 {
		return code
	}
	if (sub == "set" && len(pos) != 2) || (sub == "get" && len(pos) > 1) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	err := withControl(cfg, func(c ctlClient) error {
		if sub == "set" {
			if err := c.SetConfig(context.Background(), pos[0], pos[1]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s = %s (restart Hearth to apply)\n", pos[0], pos[1])
			return nil
		}
		all, err := c.Config(context.Background())
		if err != nil {
			return err
		}
		if len(pos) == 1 {
			v, ok := all[pos[0]]
			if !ok {
				return fmt.Errorf("unknown config key %s", pos[0])
			}
			all = map[string]string{pos[0]: v}
		}
		if *asJSON {
			printJSON(stdout, all)
			return nil
		}
		keys := make([]string, 0, len(all))
		for k := range all {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(stdout, "%s = %s\n", k, all[k])
		}
		return nil
	})
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

func serviceCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	action := packaging.Action(args[0])
	switch action {
	case packaging.Install, packaging.Uninstall, packaging.Start, packaging.Stop:
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	var noManage *bool
	cfg, code := loadConfig("service "+args[0], args[1:], stderr, func(fs *flag.FlagSet) {
		noManage = fs.Bool("files-only", false, "only write or remove the service file; do not call the service manager")
	})
	if code != 0 {
		return code
	}
	path, err := daemon.Installer(cfg).Do(action, !*noManage)
	if err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintf(stdout, "%s: done (%s)\n", action, path)
	return 0
}

// openCmd opens the web console in the browser, logged in through a
// one-time link; with --print it prints the link instead (to the owner's
// own terminal, which unlike a browser's command line other users cannot
// read) and opens nothing.
func openCmd(args []string, stdout, stderr io.Writer) int {
	what := "console"
	if len(args) > 0 && (args[0] == "console" || args[0] == "chat") {
		what, args = args[0], args[1:]
	}
	var printOnly *bool
	cfg, code := loadConfig("open", args, stderr, func(fs *flag.FlagSet) {
		printOnly = fs.Bool("print", false, "print the link instead of opening a browser")
	})
	if code != 0 {
		return code
	}
	err := withControl(cfg, func(c ctlClient) error {
		link, err := openLink(c, cfg, what)
		if err != nil {
			return err
		}
		if *printOnly {
			fmt.Fprintln(stdout, link)
			return nil
		}
		if err := controlclient.OpenInBrowser(link); err != nil {
			return fmt.Errorf("%w ('hearth open --print' prints the link instead)", err)
		}
		// A snap-packaged browser (Ubuntu's Firefox) cannot read the
		// launch page in the runtime dir and says so: --print is the way.
		fmt.Fprintf(stdout, "Opened the %s in your browser. If it cannot read the file it was given, run 'hearth open %s --print' and open the link that prints.\n", what, what)
		return nil
	})
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

// openLink is the console's one-time login link, or the configured chat
// client logged in as the owner.
func openLink(c ctlClient, cfg daemon.Config, what string) (string, error) {
	if what == "chat" {
		link, err := c.OpenChat(context.Background())
		if err == nil && link == "" {
			err = errors.New("no chat client is configured: set chat_client_url (see 'hearth config defaults'), or connect one by hand from 'hearth open'")
		}
		return link, err
	}
	path, err := c.ConsoleLink(context.Background())
	return "http://" + cfg.ClientAddr() + path, err
}
