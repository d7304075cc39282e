package packaging

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// systemdUnitPath is where a systemd user unit goes
// (systemd.unit(5): $XDG_CONFIG_HOME/systemd/user).
func systemdUnitPath() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "systemd", "user", "hearth.service"), nil
}

// Do installs, removes, starts or stops Hearth as a systemd user
// service. With manage false only the unit file is written or removed,
// and systemctl is not called (for packaging and tests).
func (in Installer) Do(action Action, manage bool) (string, error) {
	path, err := systemdUnitPath()
	if err != nil {
		return "", err
	}
	ctl := func(args ...string) error {
		if !manage {
			return nil
		}
		return runTool("systemctl", append([]string{"--user"}, args...)...)
	}
	switch action {
	case Install:
		args, err := in.args()
		if err != nil {
			return "", err
		}
		unit, err := SystemdUnit(Service{Args: args})
		if err != nil {
			return "", err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(path, unit, 0o644); err != nil {
			return "", fmt.Errorf("write %s: %w", path, err)
		}
		if err := ctl("daemon-reload"); err != nil {
			return path, err
		}
		return path, ctl("enable", "--now", "hearth.service")
	case Uninstall:
		ctl("disable", "--now", "hearth.service") // not loaded is fine: removing is the point
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return path, err
		}
		return path, ctl("daemon-reload")
	case Start:
		return path, ctl("start", "hearth.service")
	case Stop:
		return path, ctl("stop", "hearth.service")
	}
	return "", fmt.Errorf("unknown service action %q", action)
}
