//go:build !unix

package discovery

import "syscall"

// reuse on Windows: SO_REUSEADDR is what lets several mDNS responders
// share port 5353 there (RFC 6762 §15).
func reuse(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = setReuseAddr(fd)
	})
	if err != nil {
		return err
	}
	return serr
}
