package discovery

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/hearth-chat/hearth/internal/netmon"
)

// The run goroutine: the one goroutine that sends and handles packets.
//
// It sleeps in its own read of the socket, with the read deadline as its
// timer, rather than in a select over a reader goroutine's channel and a
// time.Timer. An idle daemon's first minute is a dozen of these wake-ups
// (the announcements and the browse queries of RFC 6762 §8.3 and §5.2),
// and each used to hand the packet looped back to us from one goroutine,
// and so one thread, to another: about three thread wake-ups per packet,
// 0.3–1 ms of CPU each time, 3–5 ms in the first minute after ready
// (issue 15, docs/performance.md "The first minute after ready"). Now
// the goroutine that sent a packet finds its looped-back copy already in
// the socket when it reads next, and knows it without parsing it
// (recent).

// Timers. The runtime's monitor thread (sysmon) sleeps until the
// earliest runtime timer, so a read deadline as the timer woke it at each
// wake-up too, and it then polled every 20 µs while the goroutine ran:
// 0.03–0.08 ms of each 0.2–0.3 ms wake-up. On Linux the timerfd alarm
// (alarm_linux.go), in the runtime's poller like the socket, is the only
// timer: a goroutine of its own waits on it and pokes the read as any
// poke does (a deadline in the past, which arms no timer). Elsewhere the
// read deadline is the timer.

// mdnsGroupAddr is mdnsGroup for WriteToUDPAddrPort.
var mdnsGroupAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{224, 0, 0, 251}), 5353)

// pokes is what other goroutines ask of the run goroutine.
type pokes struct {
	kick       bool          // browse again from the shortest interval (Forget)
	netChanged bool          // net holds news from the network monitor
	net        netmon.Change // merged
}

// past is a read deadline that has passed: it interrupts a blocked read.
var past = time.Unix(1, 0)

// poke records a request for the run goroutine and interrupts its read.
// The order matters: the request is visible before the deadline moves,
// and run checks for requests after setting its own deadline, so a poke
// is never overwritten by run's next deadline unseen.
func (s *Service) poke(set func(*pokes)) {
	s.pokeMu.Lock()
	set(&s.pending)
	s.pokeMu.Unlock()
	s.poked.Store(true)
	if c := s.pokeConn.Load(); c != nil {
		c.SetReadDeadline(past)
	}
}

// takePokes returns the pending requests and clears them.
func (s *Service) takePokes() pokes {
	s.poked.Store(false)
	s.pokeMu.Lock()
	defer s.pokeMu.Unlock()
	p := s.pending
	s.pending = pokes{}
	return p
}

// recentPackets is how many of the packets we sent are remembered to
// know their copies looped back: one per interface of a round.
const recentPackets = 8

// remember notes a packet we are about to send.
func (s *Service) remember(b []byte) {
	for _, r := range s.recent {
		if bytes.Equal(r, b) {
			return
		}
	}
	if len(s.recent) == recentPackets {
		s.recent = s.recent[1:]
	}
	s.recent = append(s.recent, b)
}

// ours reports whether b is a packet we sent, come back to us through
// multicast loopback (which other daemons on this machine need). A
// packet byte for byte like one of ours says nothing new whoever sent
// it: an announcement of our own name, which the table ignores, or a
// query listing ours among its known answers, which is not answered
// (RFC 6762 §7.1), or, browsing only, a query we would not answer.
func (s *Service) ours(b []byte) bool {
	for _, r := range s.recent {
		if bytes.Equal(r, b) {
			return true
		}
	}
	return false
}

// run sends what is due, reads until the next thing is due, and handles
// what it read and what it was poked for, until ctx ends.
func (s *Service) run(ctx context.Context) {
	buf := make([]byte, maxPacket+1)
	oob := ipv4.NewControlMessage(ipv4.FlagInterface)
	var cm ipv4.ControlMessage
	al := newAlarm()
	defer al.close()
	// With the alarm, it is the timer: it pokes the read when it goes
	// off, and the socket has no deadline (see "Timers" above).
	al.watch(func() { s.poke(func(*pokes) {}) })
	s.checkNetworks(time.Now())
	var deadline time.Time
	for {
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		if s.poked.Load() {
			p := s.takePokes()
			if p.netChanged {
				s.netChanged(p.net, now)
			}
			if p.kick {
				s.queryEvery, s.nextQuery = 0, now
			}
			deadline = time.Time{} // the poke moved it
		}
		next := s.tick(now)
		if next.IsZero() {
			next = now.Add(MaxQueryInterval) // nothing due: wait for a packet or a poke
		}
		if !next.Equal(deadline) {
			if al.set(next) {
				s.udp.SetReadDeadline(time.Time{}) // a poke's deadline cleared
			} else {
				s.udp.SetReadDeadline(next) // no alarm, or a broken one
			}
			deadline = next
		}
		if s.poked.Load() || ctx.Err() != nil {
			deadline = time.Time{} // a poke may have moved it
			continue
		}
		n, oobn, err := readMsg(s.raw, s.udp, buf, oob)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			deadline = time.Time{} // passed (or moved by a poke)
			continue
		case errors.Is(err, net.ErrClosed):
			return
		case err != nil:
			if !sleepCtx(ctx, 100*time.Millisecond) { // a network going down: do not spin
				return
			}
			continue
		}
		if n > maxPacket || s.ours(buf[:n]) {
			continue
		}
		idx := 0
		if oobn > 0 && cm.Parse(oob[:oobn]) == nil {
			idx = cm.IfIndex
		}
		s.heard.Add(1)
		s.handlePacket(ctx, bytes.Clone(buf[:n]), idx, time.Now())
	}
}

// sleepCtx sleeps for d unless ctx ends first; false if it did.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
