package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ServiceAction is what 'hearth service' does.
type ServiceAction string

const (
	ServiceInstall   ServiceAction = "install"
	ServiceUninstall ServiceAction = "uninstall"
	ServiceStart     ServiceAction = "start"
	ServiceStop      ServiceAction = "stop"
)

// serviceArgs is the command line the service runs: this binary, by its
// absolute path, with the data dir and config file made explicit so the
// service finds the same Hearth the installing user configured.
func serviceArgs(cfg Config) ([]string, error) {
	bin, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the hearth binary: %w", err)
	}
	if bin, err = filepath.EvalSymlinks(bin); err != nil {
		return nil, fmt.Errorf("find the hearth binary: %w", err)
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	args := []string{bin, "run", "--data-dir", dir}
	if cfg.File != "" && cfg.File != filepath.Join(cfg.DataDir, "hearth.conf") {
		f, err := filepath.Abs(cfg.File)
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
func DetachedLogFile(cfg Config) (string, error) {
	if cfg.LogFile != "" {
		return filepath.Abs(cfg.LogFile)
	}
	dir, err := filepath.Abs(cfg.DataDir)
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
