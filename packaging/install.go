package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Action is what 'hearth service' does.
type Action string

const (
	Install   Action = "install"
	Uninstall Action = "uninstall"
	Start     Action = "start"
	Stop      Action = "stop"
)

// args is the command line the service runs: this binary, by its
// absolute path, with the data dir and config file made explicit so the
// service finds the same Hearth the installing user configured.
func (in Installer) args() ([]string, error) {
	bin := in.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find the hearth binary: %w", err)
		}
		if bin, err = filepath.EvalSymlinks(bin); err != nil {
			return nil, fmt.Errorf("find the hearth binary: %w", err)
		}
	}
	dir, err := filepath.Abs(in.DataDir)
	if err != nil {
		return nil, err
	}
	args := []string{bin, "run", "--data-dir", dir}
	if in.ConfigFile != "" && in.ConfigFile != filepath.Join(in.DataDir, "hearth.conf") {
		f, err := filepath.Abs(in.ConfigFile)
		if err != nil {
			return nil, err
		}
		args = append(args, "--config", f)
	}
	return args, nil
}

// DetachedLogFile is the log_file a daemon that no log collector watches
// runs with (a launchd or Windows Run-key service, or one the tray starts
// detached): the configured one, else <data dir>/hearth.log, as an
// absolute path.
func DetachedLogFile(logFile, dataDir string) (string, error) {
	if logFile != "" {
		return filepath.Abs(logFile)
	}
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "hearth.log"), nil
}

// runTool runs a service manager command, folding its output into the
// error so the person sees why it failed.
func runTool(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}
