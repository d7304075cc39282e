package discovery

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
)

// Peer is another Hearth daemon seen on the local network.
type Peer struct {
	ServerName string
	Addrs      []string // IP addresses from the answer, IPv4 first
	Port       int      // its federation listener's port
	KeyID, Key string   // the announced signing key: ed25519:<id>, unpadded base64
	FirstSeen  time.Time
	LastSeen   time.Time
	// KeyChanged: the announced key is not the one pinned the first time
	// this server name was seen. Such a peer is listed, never routed to.
	KeyChanged bool
}

// Routable reports whether federation may be routed to the peer: its key
// is the pinned one and it announced an address that can be dialled
// without an interface zone.
func (p Peer) Routable() bool { return !p.KeyChanged && p.Route(nil) != "" }

// Route is the "ip:port" federation should dial for p: the first address
// in one of the local networks (a daemon announces the addresses of all
// its interfaces, some of which may be unreachable from here, such as a
// container bridge), else the first IPv4, else the first IPv6 that is not
// link-local. Never a loopback or multicast address: a route is exempt
// from federation's address policy (federation/resolve), so a device
// announcing 127.0.0.1 would otherwise point federation at this
// computer's own services. Empty when there is none.
func (p Peer) Route(local []*net.IPNet) string {
	var usable []net.IP
	for _, a := range p.Addrs {
		if ip := net.ParseIP(a); ip != nil && !ip.IsLinkLocalUnicast() && !ip.IsUnspecified() && !ip.IsLoopback() && !ip.IsMulticast() {
			usable = append(usable, ip)
		}
	}
	for _, ip := range usable {
		for _, n := range local {
			if n.Contains(ip) {
				return net.JoinHostPort(ip.String(), fmt.Sprint(p.Port))
			}
		}
	}
	if len(usable) == 0 || p.Port <= 0 {
		return ""
	}
	return net.JoinHostPort(usable[0].String(), fmt.Sprint(p.Port))
}

// announcement is one parsed DNS-SD answer.
type announcement struct {
	name       string
	addrs      []string
	port       int
	keyID, key string
}

// Change is one routing-relevant change to the table: a verified peer
// appeared or moved (Gone false), or it expired or its key changed (Gone
// true).
type Change struct {
	Peer Peer
	Gone bool
}

// table is the peer table and its TOFU pins (bucket lanpins).
type table struct {
	db   *store.DB
	self string        // own server name: own announcements are ignored
	ttl  time.Duration // a peer not seen for this long is dropped

	mu    sync.Mutex
	peers map[string]*Peer
}

func newTable(db *store.DB, self string, ttl time.Duration) *table {
	return &table{db: db, self: self, ttl: ttl, peers: map[string]*Peer{}}
}

// pin is a lanpins value.
type pin struct {
	Key      string `json:"key"` // <key ID>:<base64 key>
	PinnedTS int64  `json:"pinned_ts"`
}

// observe records an announcement seen at now and returns the routing
// change it makes, if any.
func (t *table) observe(ctx context.Context, a announcement, now time.Time) ([]Change, error) {
	if a.name == t.self {
		return nil, nil
	}
	pinned, err := t.pinKey(ctx, a.name, a.keyID+":"+a.key, now)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old, known := t.peers[a.name]
	p := &Peer{ServerName: a.name, Addrs: a.addrs, Port: a.port, KeyID: a.keyID, Key: a.key,
		FirstSeen: now, LastSeen: now, KeyChanged: pinned != a.keyID+":"+a.key}
	if known {
		p.FirstSeen = old.FirstSeen
	}
	t.peers[a.name] = p
	if p.KeyChanged && (!known || !old.KeyChanged || old.Key != p.Key) {
		slog.Warn("LAN discovery: a server announced another key than the one pinned for its name; not routing to it",
			"server_name", a.name, "key_id", a.keyID, "pinned", pinned)
	}
	wasRoutable := known && old.Routable()
	switch {
	case p.Routable() && (!wasRoutable || old.Port != p.Port || !slices.Equal(old.Addrs, p.Addrs)):
		return []Change{{Peer: *p}}, nil
	case wasRoutable && !p.Routable():
		return []Change{{Peer: *p, Gone: true}}, nil
	}
	return nil, nil
}

// pinKey returns the key pinned for name, pinning key if there is none.
func (t *table) pinKey(ctx context.Context, name, key string, now time.Time) (string, error) {
	var have pin
	err := t.db.View(func(tx *store.Tx) error {
		if v := tx.Get(store.LANPins, []byte(name)); v != nil {
			return json.Unmarshal(v, &have)
		}
		return nil
	})
	if err != nil || have.Key != "" {
		return have.Key, err
	}
	v, _ := json.Marshal(pin{Key: key, PinnedTS: now.UnixMilli()})
	err = t.db.Update(ctx, func(tx *store.Tx) error {
		// Another announcement may have pinned it since the read.
		if cur := tx.Get(store.LANPins, []byte(name)); cur != nil {
			return json.Unmarshal(cur, &have)
		}
		have.Key = key
		return tx.Put(store.LANPins, []byte(name), v)
	})
	if err != nil {
		return "", fmt.Errorf("discovery: pin key of %s: %w", name, err)
	}
	return have.Key, nil
}

// expire drops the peers not seen since now-ttl.
func (t *table) expire(now time.Time) []Change {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Change
	for name, p := range t.peers {
		if now.Sub(p.LastSeen) > t.ttl {
			delete(t.peers, name)
			if p.Routable() {
				out = append(out, Change{Peer: *p, Gone: true})
			}
		}
	}
	return out
}

// list returns the peers sorted by server name.
func (t *table) list() []Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Peer, 0, len(t.peers))
	for _, p := range t.peers {
		cp := *p
		cp.Addrs = slices.Clone(p.Addrs)
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.ServerName, b.ServerName) })
	return out
}

// parseTXT reads the TXT records of an announcement: v=1, server_name and
// key=<key ID>:<unpadded base64 ed25519 public key>.
func parseTXT(txt []string) (a announcement, err error) {
	kv := map[string]string{}
	for _, s := range txt {
		k, v, _ := strings.Cut(s, "=")
		kv[k] = v
	}
	if kv["v"] != "1" {
		return a, fmt.Errorf("unknown announcement version %q", kv["v"])
	}
	if a.name = kv["server_name"]; a.name == "" || strings.ContainsAny(a.name, "/@ ") {
		return a, fmt.Errorf("bad server_name %q", a.name)
	}
	key := kv["key"]
	i := strings.LastIndex(key, ":")
	if i < 0 || !strings.HasPrefix(key, "ed25519:") || i == len("ed25519") {
		return a, errors.New("key is not ed25519:<id>:<base64 key>")
	}
	a.keyID, a.key = key[:i], key[i+1:]
	if pub, err := base64.RawStdEncoding.DecodeString(a.key); err != nil || len(pub) != ed25519.PublicKeySize {
		return a, fmt.Errorf("key of %s is not an ed25519 public key", a.name)
	}
	return a, nil
}

// txtRecords is the TXT of this server's own announcement.
func txtRecords(name, keyID string, key ed25519.PublicKey) []string {
	return []string{"v=1", "server_name=" + name, "key=" + keyID + ":" + base64.RawStdEncoding.EncodeToString(key)}
}
