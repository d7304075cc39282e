//go:build !linux

package discovery

import (
	"net"
	"net/netip"
)

// rawConn is the socket's syscall.RawConn (unused here: see
// rawsys_linux.go).
type rawConn interface {
	Read(func(fd uintptr) bool) error
	Write(func(fd uintptr) bool) error
}

func readMsg(_ rawConn, c *net.UDPConn, buf, oob []byte) (n, oobn int, err error) {
	n, oobn, _, _, err = c.ReadMsgUDPAddrPort(buf, oob)
	return n, oobn, err
}

func writeTo(_ rawConn, c *net.UDPConn, b []byte, to netip.AddrPort) error {
	_, err := c.WriteToUDPAddrPort(b, to)
	return err
}
