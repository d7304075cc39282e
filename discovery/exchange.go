package discovery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"
)

// The service's side of the mDNS exchange (RFC 6762): what it multicasts
// (announcements, queries, goodbyes) and how it handles what it hears.

// respond multicasts our records on interface idx (0: all) with ttl.
func (s *Service) respond(idx int, ttl time.Duration, now time.Time) {
	if !s.announce {
		return
	}
	for _, i := range s.ifs {
		if idx != 0 && i.ifi.Index != idx {
			continue
		}
		addrs := s.addrsFor(i)
		if len(addrs) == 0 {
			continue
		}
		b, err := buildResponse(s.me, ttl, addrs)
		if err != nil {
			slog.Warn("LAN discovery: cannot build our announcement", "err", err)
			return
		}
		s.send(b, i)
		s.lastResp[i.ifi.Index] = now
	}
}

// query multicasts a browse query (instance "") or a refresh query on
// every interface.
func (s *Service) query(instance string, known []knownAnswer) {
	b, err := buildQuery(instance, known)
	if err != nil {
		slog.Debug("LAN discovery: cannot build a query", "err", err)
		return
	}
	for _, i := range s.ifs {
		s.send(b, i)
	}
}

func (s *Service) send(b []byte, i iface) {
	s.sent++
	s.sentTotal.Add(1)
	if s.sendHook != nil {
		s.sendHook(b, i)
		return
	}
	if s.conn == nil {
		return
	}
	// One setsockopt when the interface changes, not one per packet:
	// each system call of an idle daemon costs (issue 15).
	if s.mcastIf != i.ifi.Index {
		if err := s.conn.SetMulticastInterface(&i.ifi); err != nil {
			s.mcastIf = 0
			slog.Debug("LAN discovery: cannot send", "interface", i.ifi.Name, "err", err)
			return
		}
		s.mcastIf = i.ifi.Index
	}
	s.remember(b)
	if err := writeTo(s.raw, s.udp, b, mdnsGroupAddr); err != nil {
		slog.Debug("LAN discovery: cannot send", "interface", i.ifi.Name, "err", err)
	}
}

// goodbye withdraws our records (TTL 0, RFC 6762 §10.1) on every
// interface, so peers drop us within a second instead of a TTL.
func (s *Service) goodbye() {
	s.respond(0, 0, time.Now())
}

// handlePacket is the entry point of everything received: a query may
// schedule our answer, a response updates the table. Nothing here
// trusts the packet's size, counts or names.
func (s *Service) handlePacket(ctx context.Context, b []byte, ifIndex int, now time.Time) {
	var in *iface
	if ifIndex != 0 {
		for k := range s.ifs {
			if s.ifs[k].ifi.Index == ifIndex {
				in = &s.ifs[k]
			}
		}
		if in == nil {
			return // an interface we do not run on
		}
	}
	pk, err := parsePacket(b)
	if err != nil {
		return
	}
	if !pk.response {
		s.onQuery(pk, ifIndex, now)
		return
	}
	for _, sg := range sightings(pk) {
		if sg.txtErr != nil {
			if sg.ttl > 0 {
				continue
			}
			sg.ann = announcement{} // a goodbye by instance only
		}
		sg.ann.addrs = s.usable(sg.ann.addrs, in)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		s.changing.Lock()
		changes, err := s.table.observe(wctx, sg, now)
		s.apply(changes)
		s.changing.Unlock()
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			slog.Warn("LAN discovery", "err", err)
		}
	}
}

// onQuery schedules our answer: at once for our unique records, after
// 20–120 ms when the shared PTR is asked (RFC 6762 §6), never sooner than
// a second after our last answer on that interface (§6.2), and not at
// all when the asker already holds our PTR with half its TTL (§7.1).
func (s *Service) onQuery(pk packet, ifIndex int, now time.Time) {
	if !s.announce {
		return
	}
	ours, shared := asksFor(pk, s.me)
	if !ours || knowsUs(pk, s.me, RecordTTL) {
		return
	}
	at := now
	if shared {
		at = at.Add(20*time.Millisecond + time.Duration(rand.Int64N(int64(100*time.Millisecond))))
	}
	if last, ok := s.lastResp[ifIndex]; ok && at.Before(last.Add(minResponseGap)) {
		at = last.Add(minResponseGap)
	}
	if cur, ok := s.respondAt[ifIndex]; !ok || at.Before(cur) {
		s.respondAt[ifIndex] = at
	}
}
