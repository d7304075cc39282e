package federation

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Reachability is the result of the self-check: can other servers reach
// this one's federation listener? A laptop usually sits behind NAT, so the
// answer decides whether remote servers can deliver at all, and the tray
// and console show it.
type Reachability struct {
	Checked   time.Time `json:"checked"`
	Via       string    `json:"via,omitempty"` // the notary that answered
	Reachable *bool     `json:"reachable"`     // nil: not checked (no notary configured)
	Error     string    `json:"error,omitempty"`
}

// reachability keeps the last result.
type reachability struct {
	mu   sync.Mutex
	last Reachability
}

// CheckReachable asks a trusted notary for this server's current key
// (POST /_matrix/key/v2/query) with a minimum_valid_until_ts beyond any
// answer it could have cached, so it must fetch the key from this server
// over the public network. Getting our own key back means this server is
// reachable from where the notary is.
func (s *Service) CheckReachable(ctx context.Context, client gomatrixserverlib.KeyClient, notary spec.ServerName) Reachability {
	res := Reachability{Checked: s.now(), Via: string(notary)}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Our key answers are valid for a day; asking for 23 h from now rules
	// out answers the notary fetched more than an hour ago.
	req := map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp{
		{ServerName: s.cfg.ServerName, KeyID: s.cfg.KeyID}: spec.AsTimestamp(s.now().Add(23 * time.Hour)),
	}
	keys, err := client.LookupServerKeys(ctx, notary, req)
	ok := false
	if err == nil {
		for _, k := range keys {
			if k.ServerName == s.cfg.ServerName {
				if _, found := k.VerifyKeys[s.cfg.KeyID]; found && k.ValidUntilTS >= req[gomatrixserverlib.PublicKeyLookupRequest{ServerName: s.cfg.ServerName, KeyID: s.cfg.KeyID}] {
					ok = true
				}
			}
		}
		if !ok {
			err = fmt.Errorf("%s could not fetch this server's key: it cannot reach the federation listener", notary)
		}
	}
	res.Reachable = &ok
	if err != nil {
		res.Error = err.Error()
	}
	s.reach.mu.Lock()
	s.reach.last = res
	s.reach.mu.Unlock()
	return res
}

// LastReachability is the last self-check's result.
func (s *Service) LastReachability() Reachability {
	s.reach.mu.Lock()
	defer s.reach.mu.Unlock()
	return s.reach.last
}
