package discovery

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// The wire side of mDNS/DNS-SD (RFC 6762, RFC 6763): building our own
// packets and reading everyone's. Pure functions, no sockets, so the
// fuzz tests reach everything a packet from the network can touch.

const (
	// maxPacket is the largest mDNS message we read or write (RFC 6762
	// §17: 9000 bytes including IP and UDP headers on jumbo frames).
	maxPacket = 9000
	// Bounds on a TXT record (RFC 6763 §6.2 recommends under 200 bytes
	// and allows up to 1300 to fit one Ethernet packet).
	maxTXTBytes   = 1300
	maxTXTStrings = 16
	// maxAddrs is how many addresses of one announcement we keep.
	maxAddrs = 8
)

var (
	serviceName = dnsmessage.MustNewName(ServiceType + "." + Domain) // _hearth._tcp.local.
	classMask   = dnsmessage.Class(0x7fff)                           // without the cache-flush / QU bit (RFC 6762 §10.2, §5.4)
	cacheFlush  = dnsmessage.Class(0x8000)
)

// instanceLabel is the DNS-SD instance label for a server name. Dots are
// not allowed inside a label by the DNS library we use (it does not
// escape), so they become '-'; the label is only a handle, the server
// name itself travels in the TXT record.
func instanceLabel(serverName string) string {
	s := strings.NewReplacer(".", "-", ":", "-").Replace(serverName)
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// hostLabel is the target host of our SRV record: a name of our own
// derived from the server name, not the machine's host name, so two
// machines called the same never mix up their address records (and we
// never answer for the OS's own hostname.local).
func hostLabel(serverName string) string {
	h := sha256.Sum256([]byte(serverName))
	return "hearth-" + hex.EncodeToString(h[:6])
}

// self is what our announcement says.
type self struct {
	serverName string
	port       int
	txt        []string
}

func (s self) instance() string {
	return instanceLabel(s.serverName) + "." + ServiceType + "." + Domain
}
func (s self) host() string { return hostLabel(s.serverName) + "." + Domain }

// buildResponse is our full record set with the given TTL (0: goodbye,
// RFC 6762 §10.1) and addresses: PTR (shared), SRV, TXT, A/AAAA (unique,
// cache-flush bit set, §10.2).
func buildResponse(s self, ttl time.Duration, addrs []netip.Addr) ([]byte, error) {
	inst, err := dnsmessage.NewName(s.instance())
	if err != nil {
		return nil, err
	}
	host, err := dnsmessage.NewName(s.host())
	if err != nil {
		return nil, err
	}
	secs := uint32(ttl / time.Second)
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{Response: true, Authoritative: true})
	b.EnableCompression()
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	hdr := func(n dnsmessage.Name, unique bool) dnsmessage.ResourceHeader {
		c := dnsmessage.ClassINET
		if unique {
			c |= cacheFlush
		}
		return dnsmessage.ResourceHeader{Name: n, Class: c, TTL: secs}
	}
	if err := b.PTRResource(hdr(serviceName, false), dnsmessage.PTRResource{PTR: inst}); err != nil {
		return nil, err
	}
	if err := b.SRVResource(hdr(inst, true), dnsmessage.SRVResource{Port: uint16(s.port), Target: host}); err != nil {
		return nil, err
	}
	if err := b.TXTResource(hdr(inst, true), dnsmessage.TXTResource{TXT: s.txt}); err != nil {
		return nil, err
	}
	for _, a := range addrs {
		var err error
		if a.Is4() {
			err = b.AResource(hdr(host, true), dnsmessage.AResource{A: a.As4()})
		} else {
			err = b.AAAAResource(hdr(host, true), dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// knownAnswer is a PTR we already hold, for known-answer suppression
// (RFC 6762 §7.1).
type knownAnswer struct {
	instance string
	ttl      time.Duration // remaining
}

// buildQuery asks for the service's PTR records (browse) listing the
// answers we hold, or, with instance set, for one instance's SRV and TXT
// (a cache refresh, §5.2). Known answers are cut to fit one ordinary
// packet.
func buildQuery(instance string, known []knownAnswer) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if instance == "" {
		if err := b.Question(dnsmessage.Question{Name: serviceName, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET}); err != nil {
			return nil, err
		}
	} else {
		n, err := dnsmessage.NewName(instance)
		if err != nil {
			return nil, err
		}
		for _, t := range []dnsmessage.Type{dnsmessage.TypeSRV, dnsmessage.TypeTXT} {
			if err := b.Question(dnsmessage.Question{Name: n, Type: t, Class: dnsmessage.ClassINET}); err != nil {
				return nil, err
			}
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	size := 0
	for _, k := range known {
		n, err := dnsmessage.NewName(k.instance)
		if err != nil {
			continue
		}
		if size += len(k.instance) + 16; size > 1200 {
			break
		}
		if err := b.PTRResource(dnsmessage.ResourceHeader{Name: serviceName, Class: dnsmessage.ClassINET, TTL: uint32(k.ttl / time.Second)},
			dnsmessage.PTRResource{PTR: n}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// packet is one parsed mDNS message.
type packet struct {
	response  bool
	questions []dnsmessage.Question
	records   []dnsmessage.Resource // answers, authorities and additionals
}

func parsePacket(b []byte) (packet, error) {
	var pk packet
	if len(b) > maxPacket {
		return pk, errors.New("oversized packet")
	}
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return pk, err
	}
	// RFC 6762 §18: ignore messages with a non-zero opcode or rcode.
	if h.OpCode != 0 || h.RCode != 0 {
		return pk, errors.New("non-zero opcode or rcode")
	}
	pk.response = h.Response
	if pk.questions, err = p.AllQuestions(); err != nil {
		return pk, err
	}
	for _, all := range []func() ([]dnsmessage.Resource, error){p.AllAnswers, p.AllAuthorities, p.AllAdditionals} {
		rs, err := all()
		pk.records = append(pk.records, rs...)
		if err != nil {
			// Keep what parsed: a truncated tail does not spoil the rest.
			break
		}
	}
	return pk, nil
}

// sighting is one instance found in a response: an announcement (ttl >
// 0) or a goodbye (ttl 0; name or instance says whose).
type sighting struct {
	instance string
	ann      announcement
	ttl      time.Duration
	txtErr   error // the TXT did not parse: ignored
}

// sightings extracts the Hearth instances of a response. A Hearth
// announcement carries PTR, SRV, TXT and the SRV target's addresses in
// one packet (we always send them together), so nothing is assembled
// across packets. A PTR goodbye without a TXT (another implementation's
// goodbye) names only the instance.
func sightings(pk packet) []sighting {
	if !pk.response {
		return nil
	}
	type inst struct {
		txt      []string
		txtTTL   uint32
		hasTXT   bool
		port     int
		target   string
		srvTTL   uint32
		hasSRV   bool
		ptrTTL   uint32
		ptrOnly  bool
		position int
	}
	insts := map[string]*inst{}
	addrs := map[string][]netip.Addr{}
	var order []string
	get := func(n string) *inst {
		i := insts[n]
		if i == nil {
			if len(insts) >= 64 { // bounded work per packet
				return nil
			}
			i = &inst{position: len(order)}
			insts[n] = i
			order = append(order, n)
		}
		return i
	}
	for _, r := range pk.records {
		if r.Header.Class&classMask != dnsmessage.ClassINET {
			continue
		}
		name := strings.ToLower(r.Header.Name.String())
		switch body := r.Body.(type) {
		case *dnsmessage.PTRResource:
			if name != serviceName.String() {
				continue
			}
			if i := get(strings.ToLower(body.PTR.String())); i != nil {
				if !i.hasTXT && !i.hasSRV {
					i.ptrOnly = true
				}
				i.ptrTTL = r.Header.TTL
			}
		case *dnsmessage.SRVResource:
			if !strings.HasSuffix(name, "."+serviceName.String()) {
				continue
			}
			if i := get(name); i != nil {
				i.port, i.target, i.srvTTL, i.hasSRV, i.ptrOnly = int(body.Port), strings.ToLower(body.Target.String()), r.Header.TTL, true, false
			}
		case *dnsmessage.TXTResource:
			if !strings.HasSuffix(name, "."+serviceName.String()) {
				continue
			}
			if i := get(name); i != nil {
				i.txt, i.txtTTL, i.hasTXT, i.ptrOnly = body.TXT, r.Header.TTL, true, false
			}
		case *dnsmessage.AResource:
			if len(addrs[name]) < maxAddrs && len(addrs) < 64 {
				addrs[name] = append(addrs[name], netip.AddrFrom4(body.A))
			}
		case *dnsmessage.AAAAResource:
			if len(addrs[name]) < maxAddrs && len(addrs) < 64 {
				addrs[name] = append(addrs[name], netip.AddrFrom16(body.AAAA).Unmap())
			}
		}
	}
	var out []sighting
	for _, n := range order {
		i := insts[n]
		switch {
		case i.hasTXT && i.txtTTL == 0, i.hasSRV && i.srvTTL == 0, i.ptrOnly && i.ptrTTL == 0:
			s := sighting{instance: n}
			if i.hasTXT {
				s.ann, s.txtErr = parseTXT(i.txt)
			}
			out = append(out, s)
		case i.hasTXT && i.hasSRV:
			a, err := parseTXT(i.txt)
			a.port = i.port
			a.addrs = append(a.addrs, addrs[i.target]...)
			ttl := min(i.txtTTL, i.srvTTL)
			out = append(out, sighting{instance: n, ann: a, ttl: time.Duration(ttl) * time.Second, txtErr: err})
		}
	}
	return out
}

// parseTXT reads the TXT record of an announcement (RFC 6763 §6): v=1,
// server_name and key=<key ID>:<unpadded base64 ed25519 public key>.
// Other keys are kept in extra for newer fields (e.g. a certificate
// binding); the first occurrence of a key wins (§6.4). Sizes are bounded
// so a hostile record cannot make us hold much.
func parseTXT(txt []string) (a announcement, err error) {
	if len(txt) > maxTXTStrings {
		return a, fmt.Errorf("TXT has %d strings, more than %d", len(txt), maxTXTStrings)
	}
	total := 0
	kv := map[string]string{}
	for _, s := range txt {
		if total += len(s) + 1; total > maxTXTBytes {
			return a, fmt.Errorf("TXT longer than %d bytes", maxTXTBytes)
		}
		k, v, _ := strings.Cut(s, "=")
		k = strings.ToLower(k)
		if k == "" {
			continue
		}
		if _, dup := kv[k]; !dup {
			kv[k] = v
		}
	}
	if kv["v"] != "1" {
		return a, fmt.Errorf("unknown announcement version %q", kv["v"])
	}
	if a.name = kv["server_name"]; !validServerName(a.name) {
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
	for k, v := range kv {
		switch k {
		case "v", "server_name", "key":
		default:
			if a.extra == nil {
				a.extra = map[string]string{}
			}
			a.extra[k] = v
		}
	}
	return a, nil
}

// validServerName checks the shape of a Matrix server name (spec,
// appendices: server name): host (DNS name, IPv4 or [IPv6]) and an
// optional port, at most 255 bytes.
func validServerName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

// txtRecords is the TXT of this server's own announcement; extra keys
// (sorted by the caller) follow the three of version 1.
func txtRecords(name, keyID string, key ed25519.PublicKey, extra ...string) []string {
	return append([]string{"v=1", "server_name=" + name, "key=" + keyID + ":" + base64.RawStdEncoding.EncodeToString(key)}, extra...)
}

// asksFor reports whether a query's questions ask for our records, and
// whether any asks for the shared PTR (which calls for a random delay,
// RFC 6762 §6).
func asksFor(pk packet, s self) (ours, shared bool) {
	inst, host := strings.ToLower(s.instance()), strings.ToLower(s.host())
	for _, q := range pk.questions {
		if q.Class&classMask != dnsmessage.ClassINET && q.Class&classMask != dnsmessage.ClassANY {
			continue
		}
		n := strings.ToLower(q.Name.String())
		switch {
		case n == serviceName.String() && (q.Type == dnsmessage.TypePTR || q.Type == dnsmessage.TypeALL):
			ours, shared = true, true
		case n == inst && (q.Type == dnsmessage.TypeSRV || q.Type == dnsmessage.TypeTXT || q.Type == dnsmessage.TypeALL):
			ours = true
		case n == host && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeAAAA || q.Type == dnsmessage.TypeALL):
			ours = true
		}
	}
	return ours, shared
}

// knowsUs reports whether a query lists our PTR as a known answer with at
// least half its TTL left: then we do not answer it (RFC 6762 §7.1).
func knowsUs(pk packet, s self, ttl time.Duration) bool {
	inst := strings.ToLower(s.instance())
	for _, r := range pk.records {
		if ptr, ok := r.Body.(*dnsmessage.PTRResource); ok && strings.EqualFold(r.Header.Name.String(), serviceName.String()) &&
			strings.ToLower(ptr.PTR.String()) == inst && time.Duration(r.Header.TTL)*time.Second >= ttl/2 {
			return true
		}
	}
	return false
}
