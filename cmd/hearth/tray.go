package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hearth-chat/hearth/daemon"
	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
	"github.com/hearth-chat/hearth/tray"
)

// startDaemonFlag is `hearth tray --start-daemon`: what an installer's
// autostart entry runs at login (tray.Options.StartDaemon).
const startDaemonFlag = "start-daemon"

// trayFlags adds the tray's own flags to the daemon's.
func trayFlags(startDaemon *bool) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.BoolVar(startDaemon, startDaemonFlag, false,
			"at login: start Hearth if it is not running (once) and open the console's welcome at the first start")
	}
}

// trayCmd runs the system-tray icon until its Quit item is chosen.
func trayCmd(args []string, stdout, stderr io.Writer) int {
	toolkit, err := trayToolkit()
	if err != nil {
		fmt.Fprintln(stderr, "hearth tray:", err)
		return 1
	}
	var startDaemon bool
	cfg, code := loadConfig("tray", args, stderr, trayFlags(&startDaemon))
	if code != 0 {
		return code
	}
	self, err := os.Executable()
	if err != nil {
		return fail(stderr, err)
	}
	daemonArgs, err := trayDaemonArgs(self, cfg, args)
	if err != nil {
		return fail(stderr, err)
	}
	desktop := tray.SystemDesktop{Args: daemonArgs}
	tray.New(toolkit, endpointControl{cfg}, desktop, cfg.ClientAddr()).
		WithOptions(tray.Options{StartDaemon: startDaemon, LogFile: daemonLogFile(cfg)}).Run()
	return 0
}

// daemonLogFile is where the daemon the tray starts logs: log_file, else
// the --log-file trayDaemonArgs gives it (Open logs opens it while no
// daemon answers).
func daemonLogFile(cfg daemon.Config) string {
	if cfg.LogFile != "" {
		return cfg.LogFile
	}
	f, _ := daemon.DetachedLogFile(cfg) // trayDaemonArgs checked it
	return f
}

// runFlags are the tray's flags that `hearth run` shares: all but the
// tray's own --start-daemon (Go's flag package takes -name and --name,
// and a boolean's value only as -name=value).
func runFlags(args []string) []string {
	var out []string
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == startDaemonFlag {
			continue
		}
		out = append(out, a)
	}
	return out
}

// trayDaemonArgs is the command line of the tray's Start Hearth: this
// binary, "run" and the tray's own flags, so it starts the same Hearth,
// plus --log-file <data dir>/hearth.log when no log_file is configured.
// The daemon runs detached with its standard error going nowhere, and no
// journal or service manager collects it on any system, so it writes and
// rotates its own log file, as the launchd and Windows services do
// (daemon.DetachedLogFile); a configured log_file it reads itself.
func trayDaemonArgs(self string, cfg daemon.Config, args []string) ([]string, error) {
	cmd := append([]string{self, "run"}, runFlags(args)...)
	if cfg.LogFile != "" {
		return cmd, nil
	}
	logFile, err := daemon.DetachedLogFile(cfg)
	if err != nil {
		return nil, fmt.Errorf("the log file of a daemon started from the tray: %w", err)
	}
	return append(cmd, "--log-file", logFile), nil
}

// endpointControl looks the control endpoint up on every call: the daemon
// makes its credential on first start and may be restarted while the tray
// runs, so nothing about it is kept.
type endpointControl struct{ cfg daemon.Config }

// call runs f against the daemon's current endpoint. A data dir no
// daemon started yet has no endpoint, and no daemon running: the tray at
// login then starts one.
func call[T any](e endpointControl, f func(*controlclient.Client) (T, error)) (T, error) {
	ep, err := daemon.Control(e.cfg)
	if errors.Is(err, daemon.ErrNeverStarted) {
		err = controlclient.ErrNotRunning
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return f(controlclient.New(ep.Addr, ep.Socket, ep.Secret))
}

func (e endpointControl) Status(ctx context.Context) (*control.Status, error) {
	return call(e, func(c *controlclient.Client) (*control.Status, error) { return c.Status(ctx) })
}

func (e endpointControl) Accounts(ctx context.Context) ([]string, error) {
	return call(e, func(c *controlclient.Client) ([]string, error) { return c.Accounts(ctx) })
}

func (e endpointControl) ConsoleLink(ctx context.Context) (string, error) {
	return call(e, func(c *controlclient.Client) (string, error) { return c.ConsoleLink(ctx) })
}

func (e endpointControl) Shutdown(ctx context.Context) error {
	_, err := call(e, func(c *controlclient.Client) (struct{}, error) { return struct{}{}, c.Shutdown(ctx) })
	return err
}

func (e endpointControl) PauseFederation(ctx context.Context, paused bool) (*control.FederationStatus, error) {
	return call(e, func(c *controlclient.Client) (*control.FederationStatus, error) {
		return c.PauseFederation(ctx, paused)
	})
}

func (e endpointControl) SetFederationMode(ctx context.Context, mode string) (*control.FederationStatus, error) {
	return call(e, func(c *controlclient.Client) (*control.FederationStatus, error) {
		return c.SetFederationMode(ctx, mode)
	})
}

func (e endpointControl) SetDiscoveryMode(ctx context.Context, mode string) (*control.DiscoveryStatus, error) {
	return call(e, func(c *controlclient.Client) (*control.DiscoveryStatus, error) {
		return c.SetDiscoveryMode(ctx, mode)
	})
}

func (e endpointControl) OpenChat(ctx context.Context) (string, error) {
	return call(e, func(c *controlclient.Client) (string, error) { return c.OpenChat(ctx) })
}

func (e endpointControl) WelcomeShown(ctx context.Context) (bool, error) {
	return call(e, func(c *controlclient.Client) (bool, error) { return c.WelcomeShown(ctx) })
}
