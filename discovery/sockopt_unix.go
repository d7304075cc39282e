//go:build unix

package discovery

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reuse lets several responders share port 5353 on one machine (another
// Hearth, Avahi, Bonjour): every socket bound to it receives each
// multicast packet (RFC 6762 §15).
func reuse(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
