package packaging

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Do installs, removes, starts or stops Hearth as a LaunchAgent in
// ~/Library/LaunchAgents. With manage false launchctl is not called.
func (in Installer) Do(action Action, manage bool) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(home, "Library", "LaunchAgents", "org.hearth.daemon.plist")
	ctl := func(args ...string) error {
		if !manage {
			return nil
		}
		return runTool("launchctl", args...)
	}
	switch action {
	case Install:
		args, err := in.args()
		if err != nil {
			return "", err
		}
		logFile, err := DetachedLogFile(in.LogFile, in.DataDir)
		if err != nil {
			return "", err
		}
		plist, err := LaunchAgent(Service{Args: args, LogFile: logFile,
			Stderr: filepath.Join(filepath.Dir(logFile), "hearth.stderr.log")})
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(path, plist, 0o644); err != nil {
			return "", fmt.Errorf("write %s: %w", path, err)
		}
		return path, ctl("load", "-w", path)
	case Uninstall:
		ctl("unload", "-w", path)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return path, err
		}
		return path, nil
	case Start:
		return path, ctl("start", "org.hearth.daemon")
	case Stop:
		return path, ctl("stop", "org.hearth.daemon")
	}
	return "", fmt.Errorf("unknown service action %q", action)
}
