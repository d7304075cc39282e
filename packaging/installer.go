package packaging

import "github.com/hearth-chat/hearth/localapi/controlclient"

// Installer is the Hearth a per-user service runs, as plain values taken
// from its configuration (the daemon fills it: daemon.Installer), so that
// this package needs nothing of the daemon's.
type Installer struct {
	// Binary is the hearth binary the service runs; empty means this
	// executable, by its absolute path with symlinks resolved.
	Binary string
	// DataDir is the data dir the service runs with, made absolute.
	DataDir string
	// ConfigFile is the config file read, passed as --config unless it is
	// the data dir's own hearth.conf (or empty).
	ConfigFile string
	// LogFile is the configured log_file, empty if none (see
	// DetachedLogFile).
	LogFile string
	// Control reaches the running daemon's control API: Windows has no
	// SIGTERM to send, so the service stops through it. Called only when
	// needed, since a data dir never started has no credential yet.
	Control func() (*controlclient.Client, error)
}
