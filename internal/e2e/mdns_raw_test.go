package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/ipv4"
)

// Raw mDNS on the namespace LAN. Written from a host, for announcements no
// daemon would make (impersonations with a chosen key, malformed or
// oversized records, replays): the daemons under test hear them as they
// would from any machine. Heard by a host (MDNSSniffer), for what daemons
// send: announcements, goodbyes, how often they query.

// mdnsGroup is the mDNS IPv4 group and port (RFC 6762 §3).
var mdnsGroup = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}

// Announcement is one unsolicited DNS-SD answer (RFC 6763 §4.1, §6): PTR
// from the service type to the instance, SRV with the port and host, the
// instance's TXT strings, and the host's A record.
type Announcement struct {
	Instance string // the instance label: "name" of name._hearth._tcp.local.
	HostName string // "host" of host.local.
	IP       net.IP
	Port     uint16
	TXT      []string
	TTL      uint32 // seconds; 0 is a goodbye (RFC 6762 §10.1)
}

// HearthTXT is the TXT of a hearth announcement today (discovery's v=1
// records): server_name and key=<key ID>:<unpadded base64 public key>.
func HearthTXT(serverName, keyID string, key ed25519.PublicKey) []string {
	return []string{"v=1", "server_name=" + serverName, "key=" + keyID + ":" + base64.RawStdEncoding.EncodeToString(key)}
}

// NewSigningKey makes an ed25519 key pair, as a daemon's signing key.
func NewSigningKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	noErr(t, err, "ed25519 key")
	return pub, priv
}

// Pack encodes the announcement as an mDNS response.
func (a Announcement) Pack() ([]byte, error) {
	service := dnsmessage.MustNewName("_hearth._tcp.local.")
	instance, err := dnsmessage.NewName(a.Instance + "._hearth._tcp.local.")
	if err != nil {
		return nil, err
	}
	host, err := dnsmessage.NewName(a.HostName + ".local.")
	if err != nil {
		return nil, err
	}
	hdr := func(name dnsmessage.Name, typ dnsmessage.Type) dnsmessage.ResourceHeader {
		return dnsmessage.ResourceHeader{Name: name, Type: typ, Class: dnsmessage.ClassINET, TTL: a.TTL}
	}
	var ip4 [4]byte
	copy(ip4[:], a.IP.To4())
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true, Authoritative: true})
	b.EnableCompression()
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	for _, add := range []func() error{
		func() error {
			return b.PTRResource(hdr(service, dnsmessage.TypePTR), dnsmessage.PTRResource{PTR: instance})
		},
		func() error {
			return b.SRVResource(hdr(instance, dnsmessage.TypeSRV), dnsmessage.SRVResource{Port: a.Port, Target: host})
		},
		func() error {
			return b.TXTResource(hdr(instance, dnsmessage.TypeTXT), dnsmessage.TXTResource{TXT: a.TXT})
		},
		func() error { return b.AResource(hdr(host, dnsmessage.TypeA), dnsmessage.AResource{A: ip4}) },
	} {
		if err := add(); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// Announce multicasts the announcement from the host's eth0.
func (h *Host) Announce(t testing.TB, a Announcement) {
	t.Helper()
	pkt, err := a.Pack()
	noErr(t, err, "pack announcement %+v", a)
	h.SendMDNS(t, pkt)
}

// SendMDNS multicasts any bytes to the mDNS group and port from the host's
// eth0: the way in for malformed and oversized packets.
func (h *Host) SendMDNS(t testing.TB, pkt []byte) {
	t.Helper()
	err := h.Do(func() error {
		c, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			return err
		}
		defer c.Close()
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		p := ipv4.NewPacketConn(c)
		// The host has no route for 224.0.0.0/4: name the interface.
		if err := p.SetMulticastInterface(ifi); err != nil {
			return err
		}
		_, err = p.WriteTo(pkt, nil, mdnsGroup)
		return err
	})
	noErr(t, err, "send %d bytes of mDNS from %s", len(pkt), h.NS)
}

// rawPeer announces a made-up hearth server from host h with a fresh key
// and returns that key.
func rawPeer(t testing.TB, h *Host, serverName string) ed25519.PublicKey {
	t.Helper()
	pub, _ := NewSigningKey(t)
	h.Announce(t, Announcement{Instance: serverName, HostName: fmt.Sprintf("raw%d", h.Index), IP: net.ParseIP(h.IP),
		Port: 8448, TXT: HearthTXT(serverName, "ed25519:raw", pub), TTL: 120})
	return pub
}

// MDNSSniffer records every mDNS packet a host hears: a listener on the
// LAN, for what daemons send (announcements, goodbyes, how often they
// query).
type MDNSSniffer struct {
	conn net.PacketConn
	mu   sync.Mutex
	pkts []MDNSPacket
}

// MDNSPacket is one packet heard.
type MDNSPacket struct {
	At       time.Time
	From     net.IP
	Response bool
	Records  []MDNSRecord // answers, authorities and additionals
	Bad      error        // set when the packet did not parse
}

// MDNSRecord is one resource record of a packet.
type MDNSRecord struct {
	Name string
	Type dnsmessage.Type
	TTL  uint32
	TXT  []string
}

// SniffMDNS starts recording the mDNS packets the host hears on eth0 until
// the test ends. Use a host without a daemon: the sniffer binds port 5353.
func (h *Host) SniffMDNS(t testing.TB) *MDNSSniffer {
	t.Helper()
	s := &MDNSSniffer{}
	err := h.Do(func() error {
		c, err := net.ListenPacket("udp4", "0.0.0.0:5353")
		if err != nil {
			return err
		}
		ifi, err := net.InterfaceByName("eth0")
		if err == nil {
			err = ipv4.NewPacketConn(c).JoinGroup(ifi, &net.UDPAddr{IP: mdnsGroup.IP})
		}
		if err != nil {
			c.Close()
			return err
		}
		s.conn = c
		return nil
	})
	noErr(t, err, "listen for mDNS in %s", h.NS)
	t.Cleanup(func() { s.conn.Close() })
	go s.read()
	return s
}

func (s *MDNSSniffer) read() {
	buf := make([]byte, 65536)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			return // closed at the end of the test
		}
		p := parseMDNS(buf[:n])
		p.At = time.Now()
		if ua, ok := from.(*net.UDPAddr); ok {
			p.From = ua.IP
		}
		s.mu.Lock()
		s.pkts = append(s.pkts, p)
		s.mu.Unlock()
	}
}

func parseMDNS(b []byte) MDNSPacket {
	var p MDNSPacket
	var ps dnsmessage.Parser
	hdr, err := ps.Start(b)
	if err == nil {
		p.Response = hdr.Response
		err = ps.SkipAllQuestions()
	}
	if err == nil {
		p.Records, err = readSection(p.Records, ps.AnswerHeader, ps.SkipAnswer, ps.TXTResource)
	}
	if err == nil {
		err = ps.SkipAllAuthorities()
	}
	if err == nil { // the SRV, TXT and A of an answer to a PTR query come here
		p.Records, err = readSection(p.Records, ps.AdditionalHeader, ps.SkipAdditional, ps.TXTResource)
	}
	p.Bad = err
	return p
}

// readSection appends the records of one section of a message.
func readSection(out []MDNSRecord, header func() (dnsmessage.ResourceHeader, error), skip func() error,
	txt func() (dnsmessage.TXTResource, error)) ([]MDNSRecord, error) {
	for {
		rh, err := header()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		r := MDNSRecord{Name: rh.Name.String(), Type: rh.Type, TTL: rh.TTL}
		if rh.Type == dnsmessage.TypeTXT {
			var t dnsmessage.TXTResource
			t, err = txt()
			r.TXT = t.TXT
		} else {
			err = skip()
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}

// Packets returns what has been heard so far.
func (s *MDNSSniffer) Packets() []MDNSPacket {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pkts)
}

// WaitPacket waits until a packet heard from ip satisfies pred and
// returns it; it fails after deadline.
func (s *MDNSSniffer) WaitPacket(t testing.TB, deadline time.Duration, ip, what string, pred func(MDNSPacket) bool) MDNSPacket {
	t.Helper()
	start := time.Now()
	for {
		for _, p := range s.Packets() {
			if p.From.String() == ip && pred(p) {
				return p
			}
		}
		if time.Since(start) > deadline {
			t.Fatalf("no mDNS packet from %s %s within %v (heard %d packets)", ip, what, deadline, len(s.Packets()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Announces reports whether p is a response whose TXT names serverName
// with a TTL above zero; Goodbye whether it withdraws it (TTL 0, RFC 6762
// §10.1).
func (p MDNSPacket) Announces(serverName string) bool { return p.txtFor(serverName, false) }

// Goodbye: see Announces.
func (p MDNSPacket) Goodbye(serverName string) bool { return p.txtFor(serverName, true) }

func (p MDNSPacket) txtFor(serverName string, goodbye bool) bool {
	if !p.Response {
		return false
	}
	for _, r := range p.Records {
		if r.Type == dnsmessage.TypeTXT && slices.Contains(r.TXT, "server_name="+serverName) && (r.TTL == 0) == goodbye {
			return true
		}
	}
	return false
}
