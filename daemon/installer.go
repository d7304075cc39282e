package daemon

import (
	"github.com/hearth-chat/hearth/localapi/controlclient"
	"github.com/hearth-chat/hearth/packaging"
)

// Installer is what 'hearth service' needs of cfg, for packaging to
// install, start or stop the service that runs this Hearth. The control
// endpoint is looked up only when the service stops through it
// (Windows), since a data dir never started has none.
func Installer(cfg Config) packaging.Installer {
	return packaging.Installer{DataDir: cfg.DataDir, ConfigFile: cfg.File, LogFile: cfg.LogFile,
		Control: func() (*controlclient.Client, error) {
			ep, err := Control(cfg)
			if err != nil {
				return nil, err
			}
			return controlclient.New(ep.Addr, ep.Socket, ep.Secret), nil
		}}
}

// DetachedLogFile is the log file of a daemon that no log collector
// watches (packaging.DetachedLogFile): cfg's log_file, else
// <data dir>/hearth.log, as an absolute path.
func DetachedLogFile(cfg Config) (string, error) {
	return packaging.DetachedLogFile(cfg.LogFile, cfg.DataDir)
}
