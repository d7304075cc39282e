package daemon

import (
	"context"
	"io"
	"log/slog"
	"sort"

	"github.com/sirupsen/logrus"
)

// gomatrixserverlib (and matrix-org/util under it) log through logrus's
// standard logger, in logrus's own format on standard error and at its own
// level. routeLogrus makes that logger follow log_level and hands every
// entry to our slog handler, so its lines share the daemon's format, log
// ring, repeat limiter and log file.
func routeLogrus(l *logrus.Logger, h slog.Handler, level slog.Level) {
	l.SetOutput(io.Discard)
	l.SetFormatter(discardFormatter{})
	switch {
	case level <= slog.LevelDebug:
		l.SetLevel(logrus.DebugLevel)
	case level <= slog.LevelInfo:
		l.SetLevel(logrus.InfoLevel)
	case level <= slog.LevelWarn:
		l.SetLevel(logrus.WarnLevel)
	default:
		l.SetLevel(logrus.ErrorLevel)
	}
	l.ReplaceHooks(logrus.LevelHooks{})
	l.AddHook(logrusHook{h})
}

// discardFormatter spares logrus formatting a line that io.Discard drops.
type discardFormatter struct{}

func (discardFormatter) Format(*logrus.Entry) ([]byte, error) { return nil, nil }

// logrusHook forwards logrus entries to slog, the fields as attributes.
type logrusHook struct{ h slog.Handler }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (k logrusHook) Fire(e *logrus.Entry) error {
	var level slog.Level
	switch e.Level {
	case logrus.TraceLevel:
		level = slog.LevelDebug - 4
	case logrus.DebugLevel:
		level = slog.LevelDebug
	case logrus.InfoLevel:
		level = slog.LevelInfo
	case logrus.WarnLevel:
		level = slog.LevelWarn
	default: // error, fatal, panic
		level = slog.LevelError
	}
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if !k.h.Enabled(ctx, level) {
		return nil
	}
	r := slog.NewRecord(e.Time, level, e.Message, 0)
	keys := make([]string, 0, len(e.Data))
	for key := range e.Data {
		keys = append(keys, key)
	}
	sort.Strings(keys) // logrus fields are a map; a stable order reads better
	for _, key := range keys {
		v := e.Data[key]
		if err, ok := v.(error); ok {
			v = err.Error()
		}
		r.AddAttrs(slog.Any(key, v))
	}
	r.AddAttrs(slog.String("logger", "logrus"))
	return k.h.Handle(ctx, r)
}
