package netmon

import (
	"errors"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// openWatcher listens to netlink for link and address changes and to a
// cancel-on-set timerfd for wall-clock jumps, a resume among them (see
// the package doc). If netlink cannot be opened it polls instead; a
// timerfd that cannot be made leaves sleep to be noticed at the next
// netlink event.
func openWatcher() watcher {
	events := make(chan struct{}, 1)
	signal := func() {
		select {
		case events <- struct{}{}:
		default:
		}
	}
	var closers []func()
	w := watcher{events: events}
	if f, err := openNetlink(); err != nil {
		slog.Debug("netmon: no netlink; polling the interfaces", "every", PollInterval, "err", err)
		w.poll = PollInterval
	} else {
		closers = append(closers, func() { f.Close() })
		go readUntilClosed(f, signal)
	}
	if f, err := openClockWatch(); err != nil {
		slog.Debug("netmon: no timerfd; sleep is noticed at the next network event", "err", err)
	} else {
		closers = append(closers, func() { f.Close() })
		go readClock(f, signal)
	}
	w.close = func() {
		for _, c := range closers {
			c()
		}
	}
	return w
}

func openNetlink() (*os.File, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	sa := &unix.SockaddrNetlink{Family: unix.AF_NETLINK,
		Groups: unix.RTMGRP_LINK | unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	// A non-blocking descriptor in os.NewFile goes through the runtime's
	// poller: a read parks the goroutine without a thread, and Close
	// wakes it.
	return os.NewFile(uintptr(fd), "netlink"), nil
}

// readUntilClosed signals once per netlink read. ENOBUFS means messages
// were lost, which is an event too.
func readUntilClosed(f *os.File, signal func()) {
	buf := make([]byte, 16<<10)
	for {
		if _, err := f.Read(buf); err != nil && !errors.Is(err, unix.ENOBUFS) {
			return
		}
		signal()
	}
}

// clockWatchAhead is how far ahead the timerfd is armed: it is there to
// be cancelled, not to expire (if it does, it is armed again).
const clockWatchAhead = 365 * 24 * time.Hour

func openClockWatch() (*os.File, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_REALTIME, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("timerfd_create", err)
	}
	if err := armClockWatch(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "timerfd"), nil
}

func armClockWatch(fd int) error {
	at := unix.NsecToTimespec(time.Now().Add(clockWatchAhead).UnixNano())
	spec := unix.ItimerSpec{Value: at}
	return os.NewSyscallError("timerfd_settime",
		unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME|unix.TFD_TIMER_CANCEL_ON_SET, &spec, nil))
}

// readClock waits on the timerfd: a read fails with ECANCELED when the
// wall clock jumped or the machine resumed; the timer is armed again and
// the loop told.
func readClock(f *os.File, signal func()) {
	buf := make([]byte, 8)
	for {
		_, err := f.Read(buf)
		if err != nil && !errors.Is(err, unix.ECANCELED) {
			return // closed
		}
		// Through SyscallConn, not Fd: Fd would make the descriptor
		// blocking, and Control keeps it open while it runs.
		rc, err := f.SyscallConn()
		if err != nil {
			return
		}
		var armErr error
		if err := rc.Control(func(fd uintptr) { armErr = armClockWatch(int(fd)) }); err != nil {
			return // closed
		}
		if armErr != nil {
			slog.Debug("netmon: cannot re-arm the clock watch", "err", armErr)
			return
		}
		signal()
	}
}

func sleepClock() func() time.Duration { return asleepSoFar }

// asleepSoFar is how long the machine has been suspended since boot:
// CLOCK_BOOTTIME counts suspended time, CLOCK_MONOTONIC (Go's monotonic
// clock) does not, and both are slewed alike by NTP.
func asleepSoFar() time.Duration {
	var boot, mono unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot) != nil || unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono) != nil {
		return 0
	}
	return time.Duration(boot.Nano() - mono.Nano())
}
