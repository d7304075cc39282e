package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/ipv4"
)

// Raw mDNS from a namespace host, for announcements no daemon would make:
// impersonations with a chosen key, malformed or oversized records,
// replays. The test writes the packet; the daemons under test hear it as
// they would from any machine on the LAN.

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
