//go:build !linux

package daemon

// trimExecutable: only Linux is known to keep a start-up's pages of the
// executable mapped this way; elsewhere nothing is trimmed.
func trimExecutable() int64 { return 0 }
