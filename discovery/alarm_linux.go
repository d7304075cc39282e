package discovery

import (
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// alarm makes the runtime's poller wake on time for the run goroutine's
// read deadline.
//
// Go's poller sleeps in epoll_wait with a timeout, and Linux lets such a
// timeout run late by 0.1 % (select_estimate_accuracy: 16 ms after a
// 16 s wait), while the runtime's monitor thread (sysmon) sleeps on a
// futex that wakes on time for the same timer. Woken with the timer due
// but not yet run, sysmon polls every 20 µs until the poller comes:
// 0.2–1 ms of CPU for each of the long waits of an idle daemon's browse
// schedule (issue 15, docs/performance.md "The first minute after
// ready"). A timerfd in the poller's epoll set, armed for the same
// moment, is an hrtimer with the usual 50 µs slack: the poller wakes
// with it and runs the deadline's timer at once. Nothing reads the
// timerfd; re-arming it clears it.
type alarm struct {
	f        *os.File
	watching atomic.Bool // watch's goroutine reads the timerfd
}

func newAlarm() *alarm {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil // deadlines alone still work
	}
	// Non-blocking, so os registers it with the runtime's poller.
	return &alarm{f: os.NewFile(uintptr(fd), "discovery alarm")}
}

// set arms the alarm for at (slightly after, so that the deadline is due
// when the poller wakes); zero disarms it. It reports whether the alarm is
// armed and watched, so that it alone wakes the run goroutine: if not,
// the read deadline must.
func (a *alarm) set(at time.Time) bool {
	if a == nil {
		return false
	}
	var spec unix.ItimerSpec
	if !at.IsZero() {
		d := max(time.Until(at)+50*time.Microsecond, time.Microsecond)
		spec.Value = unix.NsecToTimespec(int64(d))
	}
	rc, err := a.f.SyscallConn()
	if err != nil {
		return false
	}
	var e unix.Errno
	// Without entersyscall, which would wake sysmon (rawsys_linux.go).
	err = rc.Control(func(fd uintptr) {
		_, _, e = unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	})
	return err == nil && e == 0 && a.watching.Load()
}

// watch calls fired each time the alarm goes off, from a goroutine of
// its own, until close. The timerfd is read without entersyscall (see
// rawsys_linux.go): waiting for it is the runtime poller's work, as for
// the socket. If the goroutine ends (the alarm closed or broken), it
// calls fired once more, so that the run goroutine, which may be waiting
// with no deadline, sees set report false and sets one.
func (a *alarm) watch(fired func()) {
	if a == nil {
		return
	}
	rc, err := a.f.SyscallConn()
	if err != nil {
		return
	}
	a.watching.Store(true)
	go func() {
		defer fired()
		defer a.watching.Store(false)
		var b [8]byte
		for {
			err := rc.Read(func(fd uintptr) bool {
				_, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
				return e != unix.EAGAIN && e != unix.EINTR // EAGAIN: not yet (or re-armed since), wait
			})
			if err != nil {
				return // closed
			}
			fired()
		}
	}()
}

func (a *alarm) close() {
	if a != nil {
		a.f.Close()
	}
}
