package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hearth-chat/hearth/daemon"
	"github.com/hearth-chat/hearth/localapi/controlclient"
	"github.com/hearth-chat/hearth/packaging"
)

// appDaemonWait bounds how long opening the app waits for the daemon's
// first answer: a first start makes keys and the owner's account.
const appDaemonWait = time.Minute

// openedAsApp runs the app's open when macOS opened Hearth.app.
func openedAsApp(args []string, stdout, stderr io.Writer) (int, bool) {
	exe, err := os.Executable()
	if err != nil {
		return 0, false
	}
	app := appBundle(exe, args)
	if app == "" {
		return 0, false
	}
	if err := openApp(app, exe, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "hearth:", err)
		alert(err.Error())
		return 1, true
	}
	return 0, true
}

func readOnlyDir(dir string) bool {
	return errors.Is(syscall.Access(dir, 2 /* W_OK */), syscall.EROFS)
}

func openApp(app, exe string, stdout, stderr io.Writer) error {
	if why := appUnsettled(app, readOnlyDir); why != "" {
		return errors.New(why)
	}
	var cfgErr bytes.Buffer
	cfg, code := loadConfig("app", nil, &cfgErr, nil)
	if code != 0 {
		return fmt.Errorf("%s", strings.TrimSpace(cfgErr.String()))
	}
	step, err := ensureLaunchAgent(cfg, exe)
	if err != nil {
		return fmt.Errorf("run Hearth at login: %w", err)
	}
	_, trayErr := trayToolkit()
	c, err := waitForDaemon(cfg, appDaemonWait)
	if err == nil && step == agentStart {
		c, err = restartOutdated(cfg, c)
	}
	if trayErr == nil {
		// A build with the menu-bar item: the app is that item, which
		// shows a daemon that did not start, and can start it.
		if trayCmd(nil, stdout, stderr) != 0 {
			return errors.New("the menu-bar item did not start (see hearth.log in Hearth's data folder)")
		}
		return nil
	}
	if err != nil {
		log, _ := daemon.DetachedLogFile(cfg)
		return fmt.Errorf("Hearth did not start: %w. Its log is %s", err, log)
	}
	link, err := openLink(c, cfg, "console")
	if err != nil {
		return err
	}
	return controlclient.OpenInBrowser(link)
}

// restartOutdated restarts a daemon that runs another version than this
// binary: dragging a new Hearth.app over the old one leaves the old
// daemon running from the replaced file until it is restarted.
func restartOutdated(cfg daemon.Config, c ctlClient) (ctlClient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	st, err := c.Status(ctx)
	cancel()
	if err != nil || st.Version == daemon.Version {
		return c, err
	}
	if _, err := daemon.Installer(cfg).Do(packaging.Stop, true); err != nil {
		return nil, err
	}
	// A stopped daemon exits cleanly, which launchd does not restart.
	for deadline := time.Now().Add(appDaemonWait); ; {
		if withControl(cfg, func(cl ctlClient) error { _, err := cl.Status(context.Background()); return err }) != nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("Hearth %s did not stop to run %s", st.Version, daemon.Version)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if _, err := daemon.Installer(cfg).Do(packaging.Start, true); err != nil {
		return nil, err
	}
	return waitForDaemon(cfg, appDaemonWait)
}

// ensureLaunchAgent writes, rewrites or starts the LaunchAgent, and says
// which it did.
func ensureLaunchAgent(cfg daemon.Config, exe string) (agentStep, error) {
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	// With manage false, starting only names the file.
	path, err := daemon.Installer(cfg).Do(packaging.Start, false)
	if err != nil {
		return 0, err
	}
	agent, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		agent, err = nil, nil
	}
	if err != nil {
		return 0, err
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	step := launchAgentStep(agent, exe, exists)
	switch step {
	case agentReinstall:
		if _, err := daemon.Installer(cfg).Do(packaging.Uninstall, true); err != nil {
			return step, err
		}
		fallthrough
	case agentInstall:
		_, err = daemon.Installer(cfg).Do(packaging.Install, true) // RunAtLoad starts it
	default:
		// Started again if it was stopped (Quit from the console exits
		// cleanly, and KeepAlive restarts only a failed daemon).
		_, err = daemon.Installer(cfg).Do(packaging.Start, true)
	}
	return step, err
}

// waitForDaemon waits until the daemon answers on its control API.
func waitForDaemon(cfg daemon.Config, limit time.Duration) (ctlClient, error) {
	deadline := time.Now().Add(limit)
	for {
		var c ctlClient
		err := withControl(cfg, func(cl ctlClient) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := cl.Status(ctx)
			c = cl
			return err
		})
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// alert shows msg in a dialog: an app opened from Finder has no terminal.
func alert(msg string) {
	exec.Command("osascript", "-e", "on run argv",
		"-e", `display alert "Hearth" message (item 1 of argv) as critical`,
		"-e", "end run", msg).Run()
}
