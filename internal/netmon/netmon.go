// Package netmon watches what a laptop's daemon must react to on the
// network: links and addresses coming and going, and the machine waking
// from sleep. It owns one watcher per Monitor, however many subscribers
// there are (LAN discovery and federation share one netlink socket), and
// nothing else: what a change means is the subscribers' business.
//
// An idle daemon must not wake up (issues 11 and 15: zero CPU ticks a
// minute), so nothing here runs on a short period where the system can
// tell us instead:
//
//   - Links and addresses, on Linux: a netlink route socket subscribed to
//     RTMGRP_LINK, RTMGRP_IPV4_IFADDR and RTMGRP_IPV6_IFADDR, read through
//     the runtime's poller, so it costs nothing until the kernel writes.
//     Elsewhere, and if the socket cannot be opened, the interfaces are
//     compared every PollInterval.
//   - Sleep, on Linux: a timerfd on CLOCK_REALTIME armed a year ahead with
//     TFD_TIMER_CANCEL_ON_SET. The kernel cancels such timers whenever the
//     wall clock jumps, and treats a resume as such a jump
//     (timekeeping_resume calls timerfd_resume), so a blocked read returns
//     ECANCELED within moments of waking, with no timer running while
//     awake. A wall clock set by hand or by NTP cancels it too; what tells
//     a sleep from that is CLOCK_BOOTTIME minus CLOCK_MONOTONIC, which
//     grows only while the machine is suspended. That difference is read
//     at every event, so a resume that only brought netlink events (or a
//     kernel without timerfd) is noticed as well. We chose this over a
//     rare timer (minutes late, and still a wake-up) and over comparing
//     clocks on a tick (what the daemon did every 30 s before). Elsewhere
//     the poll compares the wall clock with Go's monotonic one, which
//     stops while the machine sleeps on macOS and Windows.
//
// Events come in bursts (a Wi-Fi association is a dozen netlink
// messages), so the monitor waits settleDelay after the first, then reads
// the interfaces once and tells subscribers only if something they could
// see changed: flags (a cable or Wi-Fi link coming back), names, indexes
// or addresses. A netlink message that changes none of these (statistics,
// a neighbour's link) costs one read and tells no one.
package netmon

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// settleDelay lets a burst of events end before the interfaces are
	// read.
	settleDelay = 300 * time.Millisecond
	// PollInterval is how often the interfaces and clocks are compared
	// where the system does not tell (no netlink).
	PollInterval = 3 * time.Second
	// minSleep is how much time asleep counts as having slept. Below it,
	// nothing a peer or a route could notice has happened.
	minSleep = 2 * time.Second
)

// Change is what happened since the subscriber last heard: changes not
// yet received are merged into one.
type Change struct {
	Network bool // links or addresses differ
	Slept   bool // the machine slept (was suspended)
}

// String is the reason for logs: "woke from sleep", "network changed",
// or both.
func (c Change) String() string {
	var why []string
	if c.Slept {
		why = append(why, "woke from sleep")
	}
	if c.Network {
		why = append(why, "network changed")
	}
	return strings.Join(why, ", ")
}

func (c Change) or(d Change) Change {
	return Change{Network: c.Network || d.Network, Slept: c.Slept || d.Slept}
}

// Monitor tells its subscribers about network changes and sleep. The
// zero value is not usable; use New. It watches only while someone is
// subscribed: the first Subscribe opens the watcher, the last unsubscribe
// closes it.
type Monitor struct {
	mu   sync.Mutex
	subs []chan Change
	stop func() // ends the running watcher; nil when none runs

	// Seams for tests of this package: what the interfaces look like and
	// how long the machine has slept so far.
	readNet func() string
	asleep  func() time.Duration
}

// New returns a monitor that watches nothing until its first subscriber.
func New() *Monitor {
	return &Monitor{readNet: fingerprint, asleep: sleepClock()}
}

// Subscribe returns a channel that receives a Change whenever the
// network or the machine's wakefulness changed, and the function that
// ends the subscription (the channel is not closed). The channel holds
// one Change; a subscriber that has not read yet has the next merged
// into it, so the monitor never waits for a subscriber.
func (m *Monitor) Subscribe() (<-chan Change, func()) {
	ch := make(chan Change, 1)
	m.mu.Lock()
	m.subs = append(m.subs, ch)
	if m.stop == nil {
		m.stop = m.start()
	}
	m.mu.Unlock()
	var once sync.Once
	return ch, func() { once.Do(func() { m.unsubscribe(ch) }) }
}

func (m *Monitor) unsubscribe(ch chan Change) {
	m.mu.Lock()
	m.subs = slices.DeleteFunc(m.subs, func(c chan Change) bool { return c == ch })
	var stop func()
	if len(m.subs) == 0 {
		stop, m.stop = m.stop, nil
	}
	m.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// start opens the system's watcher and runs the loop until the returned
// function is called, which waits for the loop to end. It returns once
// the loop has read the state it compares against, so a subscriber that
// looks at the interfaces after Subscribe misses no change in between.
func (m *Monitor) start() func() {
	w := openWatcher()
	quit, done, ready := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer w.close()
		m.run(w, quit, ready)
	}()
	<-ready
	return func() {
		close(quit)
		<-done
	}
}

// watcher is the system's part: events says "something may have
// changed"; poll > 0 means the system does not tell and the loop must
// look every poll.
type watcher struct {
	events <-chan struct{}
	poll   time.Duration
	close  func()
}

// run reads the state to compare against (then closes ready, if not
// nil), waits for events (or polls), lets bursts settle, and reports what
// changed.
func (m *Monitor) run(w watcher, quit <-chan struct{}, ready chan<- struct{}) {
	last := m.readNet()
	lastAsleep := m.asleep()
	if ready != nil {
		close(ready)
	}
	check := func() {
		cur, asleep := m.readNet(), m.asleep()
		c := Change{Network: cur != last, Slept: asleep-lastAsleep >= minSleep}
		last, lastAsleep = cur, asleep
		if c.Network || c.Slept {
			m.deliver(c)
		}
	}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	settling := false
	var poll <-chan time.Time
	if w.poll > 0 {
		t := time.NewTicker(w.poll)
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case <-quit:
			settle.Stop()
			return
		case <-w.events:
			if !settling {
				settling = true
				settle.Reset(settleDelay)
			}
		case <-settle.C:
			settling = false
			check()
		case <-poll:
			check()
		}
	}
}

// deliver hands c to every subscriber, merged with what it has not read.
func (m *Monitor) deliver(c Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ch := range m.subs {
		d := c
		for {
			select {
			case ch <- d:
			case old := <-ch:
				d = d.or(old)
				continue
			}
			break
		}
	}
}

// fingerprint is every interface's index, name, flags and addresses, in
// one string: what a subscriber could see change.
func fingerprint() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return "error: " + err.Error()
	}
	var b strings.Builder
	for _, ifi := range ifs {
		var addrs []netip.Prefix
		as, _ := ifi.Addrs()
		for _, a := range as {
			if n, ok := a.(*net.IPNet); ok {
				if p, ok := netip.AddrFromSlice(n.IP); ok {
					ones, _ := n.Mask.Size()
					addrs = append(addrs, netip.PrefixFrom(p.Unmap(), ones))
				}
			}
		}
		slices.SortFunc(addrs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		fmt.Fprintln(&b, ifi.Index, ifi.Name, ifi.Flags, addrs)
	}
	return b.String()
}
