package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hearth-chat/hearth/daemon"
	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/controlclient"
	"github.com/hearth-chat/hearth/tray"
)

// trayCmd runs the system-tray icon until its Quit item is chosen.
func trayCmd(args []string, stdout, stderr io.Writer) int {
	toolkit, err := trayToolkit()
	if err != nil {
		fmt.Fprintln(stderr, "hearth tray:", err)
		return 1
	}
	cfg, code := loadConfig("tray", args, stderr, nil)
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
	tray.New(toolkit, endpointControl{cfg}, desktop, cfg.ClientListen).Run()
	return 0
}

// errNoMenuBar is 'hearth tray' on a macOS build without cgo: the release
// binaries are cross-built from Linux, where fyne.io/systray's Cocoa code
// cannot be compiled, so they run the daemon and console but draw no
// menu-bar item (issue 13).
var errNoMenuBar = errors.New("this build of Hearth for macOS has no menu-bar item: " +
	"the menu-bar item needs cgo, and this binary was cross-built without it. " +
	"Hearth itself runs without it: opening Hearth.app (or 'hearth service install') starts it at login, " +
	"and 'hearth open' opens the console. For the menu-bar item, build Hearth on a Mac " +
	"as packaging/README.md (\"macOS\") describes")

// trayDaemonArgs is the command line of the tray's Start Hearth: this
// binary, "run" and the tray's own flags, so it starts the same Hearth,
// plus --log-file <data dir>/hearth.log when no log_file is configured.
// The daemon runs detached with its standard error going nowhere, and no
// journal or service manager collects it on any system, so it writes and
// rotates its own log file, as the launchd and Windows services do
// (daemon.DetachedLogFile); a configured log_file it reads itself.
func trayDaemonArgs(self string, cfg daemon.Config, args []string) ([]string, error) {
	cmd := append([]string{self, "run"}, args...)
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

// call runs f against the daemon's current endpoint.
func call[T any](e endpointControl, f func(*controlclient.Client) (T, error)) (T, error) {
	ep, err := daemon.Control(e.cfg)
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
