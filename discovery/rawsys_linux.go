package discovery

import (
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The run goroutine's system calls without the runtime's system-call
// bookkeeping (issue 15: an idle daemon's wake-ups).
//
// A system call made the usual way (syscall.Syscall, what net and
// x/sys/unix use) enters the runtime's entersyscall, which wakes the
// monitor thread (sysmon) when it sleeps because every P is idle; sysmon
// then polls every 20 µs until the Ps are idle again. A browse query's
// wake-up made three such calls (sendto, recvmsg of the looped-back copy,
// timerfd_settime), so sysmon woke for each: 0.02–0.08 ms of the
// 0.2–0.3 ms a wake-up cost. These three never block (the socket and the
// timerfd are non-blocking; a read that finds nothing returns EAGAIN and
// waits in the runtime's poller as before, under the read deadline), so
// they are made with RawSyscall, which skips entersyscall: the runtime
// may keep the P while they run, which for calls this short is what it
// does anyway.

// rawConn is the socket's syscall.RawConn, taken once.
type rawConn interface {
	Read(func(fd uintptr) bool) error
	Write(func(fd uintptr) bool) error
}

// readMsg is ReadMsgUDPAddrPort without entersyscall: the packet into
// buf, its control messages into oob.
func readMsg(rc rawConn, c *net.UDPConn, buf, oob []byte) (n, oobn int, err error) {
	if rc == nil {
		n, oobn, _, _, err = c.ReadMsgUDPAddrPort(buf, oob)
		return n, oobn, err
	}
	var serr unix.Errno
	err = rc.Read(func(fd uintptr) bool {
		var from unix.RawSockaddrInet6 // room for either family
		iov := unix.Iovec{Base: &buf[0]}
		iov.SetLen(len(buf))
		msg := unix.Msghdr{Name: (*byte)(unsafe.Pointer(&from)), Namelen: uint32(unsafe.Sizeof(from)), Iov: &iov, Iovlen: 1}
		if len(oob) > 0 {
			msg.Control = &oob[0]
			msg.SetControllen(len(oob))
		}
		for {
			r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // nothing yet: wait in the poller, under the deadline
			}
			n, oobn, serr = int(r), int(msg.Controllen), e
			return true
		}
	})
	if err == nil && serr != 0 {
		err = &net.OpError{Op: "read", Net: "udp", Source: c.LocalAddr(), Err: serr}
	}
	return n, oobn, err
}

// writeTo is WriteToUDPAddrPort (IPv4) without entersyscall.
func writeTo(rc rawConn, c *net.UDPConn, b []byte, to netip.AddrPort) error {
	if rc == nil || !to.Addr().Is4() || len(b) == 0 {
		_, err := c.WriteToUDPAddrPort(b, to)
		return err
	}
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: to.Addr().As4()}
	port := (*[2]byte)(unsafe.Pointer(&sa.Port)) // network byte order
	port[0], port[1] = byte(to.Port()>>8), byte(to.Port())
	var serr unix.Errno
	err := rc.Write(func(fd uintptr) bool {
		for {
			_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0,
				uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false
			}
			serr = e
			return true
		}
	})
	if err == nil && serr != 0 {
		err = &net.OpError{Op: "write", Net: "udp", Source: c.LocalAddr(), Err: serr}
	}
	return err
}
