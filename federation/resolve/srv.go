package resolve

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"
)

// srvTTL is how long an SRV answer (or "no such record") is kept. Go's
// resolver does not expose the record's TTL, so this is short on purpose.
const srvTTL = 5 * time.Minute

// srvEntry is one cached SRV answer.
type srvEntry struct {
	addr    string // host:port of the first usable record; "" for none
	expires time.Time
}

// srvAddr looks up _<service>._tcp.<host> and returns the host:port of its
// first usable record, or "" when there is none. Records come ordered by
// priority (net.Resolver also shuffles by weight); a target of "." means
// "no service here" (RFC 2782) and is skipped.
//
// "No such record" is cached for srvTTL; any other DNS failure falls
// through uncached (some home routers refuse SRV queries outright), and the
// dial of the next step reports a network that is really down.
func (r *Resolver) srvAddr(ctx context.Context, service, host string) (string, error) {
	key := "_" + service + "._tcp." + host
	r.mu.Lock()
	e, ok := r.srv[key]
	generation := r.generation
	r.mu.Unlock()
	if ok && r.now().Before(e.expires) {
		return e.addr, nil
	}
	lookupCtx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	_, records, err := r.lookupSRV(lookupCtx, service, "tcp", host)
	addr := firstSRVAddr(records)
	if err != nil && addr == "" {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			return "", nil
		}
	}
	r.mu.Lock()
	if r.generation == generation {
		r.srv[key] = srvEntry{addr: addr, expires: r.now().Add(srvTTL)}
	}
	r.mu.Unlock()
	return addr, nil
}

func firstSRVAddr(records []*net.SRV) string {
	for _, rec := range records {
		if rec == nil || rec.Port == 0 {
			continue
		}
		target := strings.TrimSuffix(rec.Target, ".")
		if target == "" {
			continue
		}
		return net.JoinHostPort(target, strconv.Itoa(int(rec.Port)))
	}
	return ""
}
