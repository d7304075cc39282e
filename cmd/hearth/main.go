// Command hearth is the Hearth daemon and its command line: flags and
// subcommands only; everything else lives in package daemon.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hearth-chat/hearth/daemon"
)

const usage = `Hearth — a personal Matrix homeserver.

Usage:
  hearth run [flags]                    run the daemon in the foreground
  hearth config defaults                print the default config, commented
  hearth status [--json]                the running daemon's state
  hearth logs [--lines N]               its recent log lines
  hearth federation [pause|resume] [--json]   other servers this one sends to; pause or resume federation
  hearth federation mode off|lan|internet     who may reach this server: nobody, this network, or the internet
  hearth peers [--json]                 other Hearth daemons on the local network (people nearby)
  hearth peers forget NAME              delete NAME's pinned key: its next announcement is trusted on first use
  hearth peers accept|refuse NAME       NAME's key changed: accept the new key (a reinstall) or keep refusing it
  hearth peers mode [on|browse|off]     show or switch LAN discovery (browse: find others, never announce)
  hearth open [console|chat] [--print]  open the web console, or the configured chat client (chat_client_url), logged in
  hearth tray [--start-daemon]          the system-tray icon (a client of the running daemon); --start-daemon,
                                        at login: start Hearth once if it is not running, welcome at first start
  hearth config get [KEY] [--json]      settings of the running daemon
  hearth config set KEY VALUE           store a setting (applies on restart)
  hearth account add NAME [--password P]
  hearth account passwd NAME [--password P]
  hearth account list
  hearth account nearby NAME on|off   (be found by people on this network, or not)
  hearth appservice add FILE          (register an application service, e.g. a bridge)
  hearth appservice list
  hearth appservice remove ID
  hearth keys status [--json]           where the signing key is, and its ID
  hearth keys migrate --to keyring|file move secrets between OS keyring and file
  hearth keys rotate                    new signing key; the old one is kept as old_verify_keys
  hearth service install|uninstall|start|stop   run Hearth at login (systemd user unit, LaunchAgent, Run key)
  hearth check                          verify hearth.db page by page (stop Hearth first)
  hearth version                        version, commit and build date of this binary

Every subcommand takes --data-dir and --config, and every config key as a
flag (see 'hearth config defaults'). Exit codes: 0 success, 1 failure,
2 bad usage or config, 3 Hearth is running (stop it first), 4 Hearth is not
running (start it first), 5 the data dir cannot be used as it is (hearth.db
damaged, or recorded under another server_name; the message says what to do).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes: see usage.
func run(args []string, stdout, stderr io.Writer) int {
	if code, ok := openedAsApp(args, stdout, stderr); ok { // Hearth.app (app.go)
		return code
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		cfg, code := loadConfig("run", rest, stderr, nil)
		if code != 0 {
			return code
		}
		return runDaemon(cfg, stdout, stderr)
	case "config":
		if len(rest) == 1 && rest[0] == "defaults" {
			daemon.WriteDefaults(bufio.NewWriter(stdout))
			return 0
		}
		return configCmd(rest, stdout, stderr)
	case "status":
		return statusCmd(rest, stdout, stderr)
	case "logs":
		return logsCmd(rest, stdout, stderr)
	case "federation":
		return federationCmd(rest, stdout, stderr)
	case "peers":
		return peersCmd(rest, stdout, stderr)
	case "open":
		return openCmd(rest, stdout, stderr)
	case "tray":
		return trayCmd(rest, stdout, stderr)
	case "account":
		return accountCmd(rest, stdout, stderr)
	case "appservice":
		return appserviceCmd(rest, stdout, stderr)
	case "keys":
		return keysCmd(rest, stdout, stderr)
	case "service":
		return serviceCmd(rest, stdout, stderr)
	case "check":
		return checkCmd(rest, stdout, stderr)
	case "version":
		return versionCmd(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprint(stderr, usage)
	return 2
}

// loadConfig parses flags for a subcommand; extra registers its own flags.
func loadConfig(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (daemon.Config, int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "config file (default: <data dir>/hearth.conf if present)")
	daemon.RegisterFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return daemon.Config{}, 2
	}
	cfg, err := daemon.Load(fs, *configFile, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "hearth: bad config:", err)
		return cfg, 2
	}
	return cfg, 0
}

func runDaemon(cfg daemon.Config, stdout, stderr io.Writer) int {
	logs, stopLogging, err := daemon.SetupLogging(cfg, stderr)
	if err != nil {
		return fail(stderr, asDiskError(cfg.DataDir, err))
	}
	defer stopLogging()
	// Catch signals before Start: once it logs that it is ready a SIGTERM
	// must mean a clean stop, not the default kill.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := daemon.Start(cfg, stdout, logs)
	if err != nil {
		err = asDiskError(cfg.DataDir, err)
		if cfg.LogFile != "" {
			// With a log file, standard error often goes nowhere (a
			// launchd or Run-key service, the tray's Start Hearth): the
			// reason must be in the file too.
			slog.Error("hearth did not start", "err", err)
		}
		return fail(stderr, err)
	}
	select {
	case <-ctx.Done():
	case <-d.StopRequested():
	}
	slog.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Stop(sctx); err != nil {
		if cfg.LogFile != "" {
			slog.Error("shutdown", "err", err) // into the log file, as above
		}
		fmt.Fprintln(stderr, "hearth: shutdown:", err)
		return 1
	}
	return 0
}

func keysCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	sub, rest := args[0], args[1:]
	var to *string
	var asJSON *bool
	cfg, code := loadConfig("keys "+sub, rest, stderr, func(fs *flag.FlagSet) {
		to = fs.String("to", "", "keyring or file (migrate)")
		asJSON = fs.Bool("json", false, "print JSON (status)")
	})
	if code != 0 {
		return code
	}
	var err error
	switch sub {
	case "status":
		var st *daemon.KeyStatus
		if st, err = daemon.KeysStatus(cfg); err == nil {
			if *asJSON {
				json.NewEncoder(stdout).Encode(st)
			} else {
				fmt.Fprintf(stdout, "key store:  %s\nkeys are in %s\nsigning key %s (%s)\nold keys:   %d\n",
					st.Mode, st.Where, st.KeyID, st.PublicKey, len(st.OldKeys))
				if st.Warning != "" {
					fmt.Fprintln(stdout, "warning:   ", st.Warning)
				}
			}
		}
	case "migrate":
		var where string
		if where, err = daemon.MigrateKeys(cfg, *to); err == nil {
			fmt.Fprintln(stdout, "keys are now in", where)
		}
	case "rotate":
		var id string
		if id, err = daemon.RotateKeys(cfg); err == nil {
			fmt.Fprintln(stdout, "new signing key", id, "(the old one stays valid for verification)")
		}
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}
