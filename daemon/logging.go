package daemon

import (
	"io"
	"log/slog"
	"time"

	"github.com/sirupsen/logrus"
)

// Repeated-warning limits (logrepeat.go).
const (
	logRepeatWindow = time.Minute
	logRepeatKeys   = 1024
)

// SetupLogging makes the process's default slog logger the daemon's:
// text lines at log_level to log_file (rotated, logfile.go) or, when that
// is empty, to stderr, and to the ring the control API reads; identical
// warnings repeated within a minute are summarised (logrepeat.go), and
// gomatrixserverlib's logrus output goes the same way (logrus.go). It
// lives in daemon, not cmd/hearth, because it is config (log_level,
// log_file) turned into running parts. The returned stop writes pending
// summaries and closes the file.
func SetupLogging(cfg Config, stderr io.Writer) (logs *LogRing, stop func(), err error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	out := stderr
	var file *rotatingFile
	if cfg.LogFile != "" {
		if file, err = openRotatingFile(cfg.LogFile, logMaxBytes, logKeep); err != nil {
			return nil, nil, err
		}
		out = file
	}
	logs = NewLogRing(1000)
	// The ring first: io.MultiWriter stops at the first error, and the ring
	// must show what happened when the file cannot take it (a full disk).
	text := slog.NewTextHandler(io.MultiWriter(logs, out), &slog.HandlerOptions{Level: level})
	limiter := newRepeatLimiter(text, logRepeatWindow, logRepeatKeys, time.Now)
	slog.SetDefault(slog.New(limiter))
	routeLogrus(logrus.StandardLogger(), limiter, level)

	return logs, func() {
		limiter.flush()
		// Later lines (the exit) still reach stderr rather than nowhere.
		slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))
		routeLogrus(logrus.StandardLogger(), slog.Default().Handler(), level)
		if file != nil {
			file.Close()
		}
	}, nil
}
