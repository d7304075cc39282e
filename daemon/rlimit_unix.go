//go:build unix

package daemon

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit raises the soft limit on open descriptors to the hard
// limit (Go's runtime already does this at start on most systems; doing
// it here makes it explicit and logs the result) and returns the limit
// now in force, which sizes the connection caps (connBudget).
func raiseFileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		slog.Debug("descriptor limit unknown", "err", err)
		return 0
	}
	before := lim.Cur
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			slog.Debug("could not raise the descriptor limit", "soft", lim.Cur, "hard", lim.Max, "err", err)
		} else {
			lim = raised
		}
	}
	slog.Debug("descriptor limit", "soft_before", before, "soft", lim.Cur, "hard", lim.Max)
	return int(min(lim.Cur, 1<<30))
}
