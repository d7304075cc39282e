package discovery

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// watchNet tells about address and link changes on Linux through a
// netlink route socket, so an idle daemon never wakes up to poll. It
// returns the events channel, a closer, and 0 (no polling); if netlink
// cannot be opened it falls back to polling every netPoll.
func watchNet() (<-chan struct{}, func(), time.Duration) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, func() {}, netPoll
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK,
		Groups: unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, func() {}, netPoll
	}
	// A non-blocking descriptor in os.NewFile goes through the runtime's
	// poller, so Close wakes the reader.
	f := os.NewFile(uintptr(fd), "netlink")
	ch := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 16<<10)
		for {
			if _, err := f.Read(buf); err != nil && !isRetry(err) {
				return
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, func() { f.Close() }, 0
}

// isRetry: ENOBUFS means events were lost, which is an event too.
func isRetry(err error) bool {
	pe, ok := err.(*os.PathError)
	return ok && pe.Err == unix.ENOBUFS
}
