package packaging

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/windows/registry"
)

// runKey is where per-user programs that start at login are listed.
const runKey = `Software\Microsoft\Windows\CurrentVersion\Run`

// Do installs Hearth as a per-user autostart entry in the registry's
// Run key, removes it, starts Hearth in the background, or stops it
// through the control API (Windows has no SIGTERM to send). With manage
// false only the Run-key entry is written or removed.
func (in Installer) Do(action Action, manage bool) (string, error) {
	where := `HKCU\` + runKey + `\Hearth`
	args, err := in.args()
	if err != nil {
		return "", err
	}
	// A Run-key process's standard error goes nowhere: the daemon writes
	// and rotates its own log file.
	logFile, err := DetachedLogFile(in.LogFile, in.DataDir)
	if err != nil {
		return "", err
	}
	args = Service{Args: args, LogFile: logFile}.Command()
	switch action {
	case Install:
		k, _, err := registry.CreateKey(registry.CURRENT_USER, runKey, registry.SET_VALUE)
		if err != nil {
			return where, fmt.Errorf("open the Run key: %w", err)
		}
		defer k.Close()
		if err := k.SetStringValue("Hearth", commandLine(args)); err != nil {
			return where, fmt.Errorf("write the Run entry: %w", err)
		}
		if !manage {
			return where, nil
		}
		return where, startDetached(args)
	case Uninstall:
		if manage {
			in.stopThroughControl()
		}
		k, err := registry.OpenKey(registry.CURRENT_USER, runKey, registry.SET_VALUE)
		if err != nil {
			return where, fmt.Errorf("open the Run key: %w", err)
		}
		defer k.Close()
		if err := k.DeleteValue("Hearth"); err != nil && !errors.Is(err, registry.ErrNotExist) {
			return where, err
		}
		return where, nil
	case Start:
		return where, startDetached(args)
	case Stop:
		return where, in.stopThroughControl()
	}
	return "", fmt.Errorf("unknown service action %q", action)
}

// commandLine quotes each argument for the Run key.
func commandLine(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
	}
	return strings.Join(quoted, " ")
}

// startDetached runs Hearth without a console window, outliving this
// command.
func startDetached(args []string) error {
	cmd := exec.Command(args[0], args[1:]...)
	const detachedProcess, createNoWindow = 0x00000008, 0x08000000
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: detachedProcess | createNoWindow}
	return cmd.Start()
}

func (in Installer) stopThroughControl() error {
	if in.Control == nil {
		return errors.New("no way to reach Hearth's control API to stop it")
	}
	c, err := in.Control()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Shutdown(ctx)
}
