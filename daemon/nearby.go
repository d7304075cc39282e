package daemon

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/hearth-chat/hearth/discovery"
	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/matrix"
)

// People nearby (issue 11). The accounts that opted in (account.User.Nearby)
// travel in the LAN announcement's TXT record as u0…u7 =
// "<localpart>\t<display name>"; peers list them in their user directory
// as @localpart:<our server name>. A tab separates the two because a
// localpart never holds one and a display name loses control characters
// before it is announced.
//
// The list is signed (usig, peopleSig) by the server's signing key: the
// certificate binding signs only the server name and certificate key, so
// without this anyone on the LAN could replay a neighbour's name, key and
// binding with made-up people, and they would be listed under the
// neighbour's name with names of the impostor's choosing.
//
// Bounds: discovery's receivers refuse a TXT record over 16 strings or
// 1300 bytes. Name, key and the certificate binding take five strings and
// about 270 bytes (under 500 with a 255-byte server name), so people get
// at most 8 strings and 600 bytes, and their signature one string of 91
// bytes; display
// names are cut to 48 bytes and a localpart over 64 bytes is not
// announced. Who does not fit is left out (in localpart order), never the
// whole record.
const (
	maxNearbyPeople = 8
	maxNearbyBytes  = 600
	maxNearbyName   = 48
	maxNearbyLocal  = 64
	nearbyKeyPrefix = "u"
	nearbySeparator = "\t"
	nearbySigKey    = "usig"
	nearbySigCtx    = "hearth-lan-people-v1"
)

// peopleMessage is what the signing key signs for a people list: a
// domain-separated context, the server name and each uN value present
// in index order, all length-prefixed so no two lists sign alike:
//
//	"hearth-lan-people-v1" 0x00 server_name 0x00 (index, len16, value)...
func peopleMessage(serverName string, txt map[string]string) []byte {
	m := append([]byte(nearbySigCtx), 0)
	m = append(append(m, serverName...), 0)
	for i := range maxNearbyPeople {
		v, ok := txt[nearbyKeyPrefix+strconv.Itoa(i)]
		if !ok {
			continue
		}
		m = append(m, byte(i))
		m = binary.BigEndian.AppendUint16(m, uint16(min(len(v), 0xffff)))
		m = append(m, v...)
	}
	return m
}

// signedPeopleTXT is peopleTXT with its signature by serverName's key.
func signedPeopleTXT(serverName string, key ed25519.PrivateKey, users []account.User) []string {
	txt := peopleTXT(users)
	if len(txt) == 0 || key == nil {
		return txt
	}
	kv := map[string]string{}
	for _, s := range txt {
		k, v, _ := strings.Cut(s, "=")
		kv[k] = v
	}
	sig := ed25519.Sign(key, peopleMessage(serverName, kv))
	return append(txt, nearbySigKey+"="+base64.RawStdEncoding.EncodeToString(sig))
}

// peopleSigned reports whether p's people list is signed by the key it
// announces (which, for a trusted peer, is the one pinned for its name).
func peopleSigned(p discovery.Peer) bool {
	pub, err := base64.RawStdEncoding.DecodeString(p.Key)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return false
	}
	sig, err := base64.RawStdEncoding.DecodeString(p.TXT[nearbySigKey])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(pub), peopleMessage(p.ServerName, p.TXT), sig)
}

// peopleTXT is the TXT strings announcing users, unsigned.
func peopleTXT(users []account.User) []string {
	var out []string
	total := 0
	for _, u := range users {
		if len(out) == maxNearbyPeople {
			break
		}
		if len(u.Localpart) > maxNearbyLocal || strings.Contains(u.Localpart, nearbySeparator) {
			continue
		}
		s := nearbyKeyPrefix + strconv.Itoa(len(out)) + "=" + u.Localpart + nearbySeparator + cleanName(u.DisplayName, maxNearbyName)
		if total+len(s)+1 > maxNearbyBytes {
			continue
		}
		total += len(s) + 1
		out = append(out, s)
	}
	return out
}

// cleanName makes a display name safe to announce and to show: valid
// UTF-8, no control characters (a tab or newline would break the record
// or a terminal), at most max bytes, cut on a character boundary.
func cleanName(name string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(name, "") {
		if unicode.IsControl(r) {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}

// Person is someone a peer announces.
type Person struct {
	Localpart   string
	DisplayName string
}

// peopleOf reads the people of a peer's announcement, checking what a
// stranger could have put there: at most maxNearbyPeople, localparts that
// are user ID localparts (Appendices §"User Identifiers", the historical
// grammar: printable ASCII but ':'), display names cleaned as ours are.
func peopleOf(txt map[string]string) []Person {
	var out []Person
	for i := range maxNearbyPeople {
		v, ok := txt[nearbyKeyPrefix+strconv.Itoa(i)]
		if !ok {
			continue
		}
		lp, name, _ := strings.Cut(v, nearbySeparator)
		if !validRemoteLocalpart(lp) {
			continue
		}
		out = append(out, Person{Localpart: lp, DisplayName: cleanName(name, maxNearbyName)})
	}
	return out
}

func validRemoteLocalpart(lp string) bool {
	if lp == "" || len(lp) > maxNearbyLocal {
		return false
	}
	for i := 0; i < len(lp); i++ {
		if c := lp[i]; c <= 0x20 || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// trustedPeople is the people of a peer's announcement when it may put
// names in the user directory: a peer discovery verified as it does for
// routing — a LAN-only name whose key is the one pinned for it, or a
// public name whose key is the one the internet gave for it (confirmed,
// Config.InternetKeys) — with a people list signed by that key
// (peopleSigned). Both keys are as trusted as the name: the pinned one is
// the name's on this LAN, the confirmed one is the name's everywhere. An
// unconfirmed public name (no key known to compare), a key change and a
// mismatch with the internet's key are never believed.
func trustedPeople(p discovery.Peer) []Person {
	if !p.Verified || p.KeyChanged || p.KeyMismatch || !peopleSigned(p) {
		return nil
	}
	return peopleOf(p.TXT)
}

// nearbyDir implements matrix.Nearby over LAN discovery. The service is
// set once discovery starts, after the client API already serves.
type nearbyDir struct {
	lan atomic.Pointer[discovery.Service]
	// announcing serialises reading the opted-in accounts and setting
	// the TXT, so two changes committed at once cannot leave the older
	// list announced.
	announcing sync.Mutex
}

// NearbyPeople lists the people that trusted peers announce.
func (n *nearbyDir) NearbyPeople() []matrix.NearbyPerson {
	svc := n.lan.Load()
	if svc == nil {
		return nil
	}
	var out []matrix.NearbyPerson
	for _, p := range svc.Peers() {
		for _, who := range trustedPeople(p) {
			out = append(out, matrix.NearbyPerson{UserID: "@" + who.Localpart + ":" + p.ServerName, DisplayName: who.DisplayName})
		}
	}
	return out
}

// startPeople makes svc announce the people who opted in, now and after
// every change (discovery sends them only while federation is on), and,
// with federation on, list the people of trusted peers in the directory.
func (d *Daemon) startPeople(svc *discovery.Service) {
	d.announcePeople(svc)
	// Registered once: discovery may be switched off and on again
	// (discoverymode.go); the hook announces through whichever runs.
	d.peopleHook.Do(func() {
		d.accounts.OnProfileChange(func() {
			if lan := d.lanService(); lan != nil {
				d.announcePeople(lan)
			}
		})
	})
	if d.fed != nil {
		// Without federation no one nearby could be messaged: the
		// directory would offer people a DM could never reach.
		d.nearby.lan.Store(svc)
	}
}

// controlPeople is a peer's people for the control API's peer list.
func controlPeople(p discovery.Peer) []control.Person {
	var out []control.Person
	for _, who := range trustedPeople(p) {
		out = append(out, control.Person{UserID: "@" + who.Localpart + ":" + p.ServerName, DisplayName: who.DisplayName})
	}
	return out
}

// announcePeople puts the opted-in accounts in the announcement; it runs
// at start and whenever a display name, an opt-in or an activation
// changes (account.OnProfileChange). SetTXT re-announces only when the
// record changed.
func (d *Daemon) announcePeople(svc *discovery.Service) {
	d.nearby.announcing.Lock()
	defer d.nearby.announcing.Unlock()
	users, err := d.accounts.Nearby()
	if err != nil {
		slog.Warn("LAN discovery: cannot list the people to announce", "err", err)
		return
	}
	txt := signedPeopleTXT(d.cfg.ServerName, d.lanKey.Key, users)
	if n := len(txt) - 1; len(users) > 0 && n < len(users) {
		slog.Info("LAN discovery: not everyone opted in to be found nearby fits in the announcement", "opted_in", len(users), "announced", max(n, 0))
	}
	svc.SetTXT(txt)
}

// SetNearby answers POST /_hearth/v1/accounts/nearby: the running
// daemon re-announces at once (through the account hook).
func (b *controlBackend) SetNearby(ctx context.Context, name string, on bool) (string, error) {
	if err := b.d.accounts.SetNearby(ctx, name, on); err != nil {
		return "", controlError("name", err)
	}
	return b.d.accounts.UserID(name), nil
}

// NearbyAccounts answers GET /_hearth/v1/accounts/nearby.
func (b *controlBackend) NearbyAccounts() ([]string, error) {
	return nearbyIDs(b.d.accounts)
}

func nearbyIDs(a *account.Accounts) ([]string, error) {
	users, err := a.Nearby()
	ids := make([]string, 0, len(users))
	for _, u := range users {
		ids = append(ids, a.UserID(u.Localpart))
	}
	return ids, err
}

// SetNearby switches an account's opt-in on a stopped daemon's data
// (hearth account nearby NAME on|off); it is announced at the next start.
// It returns the account's user ID, under the server name the data
// holds.
func SetNearby(cfg Config, name string, on bool) (string, error) {
	var userID string
	err := withAccounts(cfg, func(a *account.Accounts) error {
		userID = a.UserID(name)
		return a.SetNearby(context.Background(), name, on)
	})
	if err != nil {
		return "", fmt.Errorf("set nearby of %s: %w", name, err)
	}
	return userID, nil
}

// NearbyAccounts lists the accounts opted in on a stopped daemon's data.
func NearbyAccounts(cfg Config) ([]string, error) {
	var ids []string
	err := withAccounts(cfg, func(a *account.Accounts) (err error) {
		ids, err = nearbyIDs(a)
		return err
	})
	return ids, err
}
