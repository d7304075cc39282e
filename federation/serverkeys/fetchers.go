package serverkeys

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// fetchTimeout bounds one direct fetch of a server's keys.
const fetchTimeout = 15 * time.Second

// remoteOnly keeps lookups of our own keys away from a fetcher. The cache
// answers our keys from the Identity; what it cannot answer is a key ID we
// never had, and asking the network (or taking DirectKeyFetcher's answer,
// which is our current key under any ID) would be wrong for that.
type remoteOnly struct {
	gomatrixserverlib.KeyFetcher
	local spec.ServerName
}

func (r remoteOnly) FetchKeys(ctx context.Context, requests map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	remote := make(map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp, len(requests))
	for req, ts := range requests {
		if req.ServerName != r.local {
			remote[req] = ts
		}
	}
	if len(remote) == 0 {
		return nil, nil
	}
	return r.KeyFetcher.FetchKeys(ctx, remote)
}

// recordingClient is the KeyClient of the direct fetcher: it also keeps
// each server's self-signed response, so that as a notary we can serve it
// again, even once the server is gone.
type recordingClient struct {
	gomatrixserverlib.KeyClient
	k *Keys
}

func (c recordingClient) GetServerKeys(ctx context.Context, server spec.ServerName) (gomatrixserverlib.ServerKeys, error) {
	keys, err := c.KeyClient.GetServerKeys(ctx, server)
	if err != nil {
		return keys, err
	}
	if err := c.k.saveResponse(ctx, server, keys); err != nil {
		// The fetcher runs its own checks and decides; keeping the raw
		// response is only a courtesy to our notary clients.
		c.k.log.Debug("key response not kept", "server", server, "err", err)
	}
	return keys, nil
}

// notaryFetcher is a PerspectiveKeyFetcher whose notary keys are either
// configured or learned from the notary itself on first use and then read
// from the cache (refetched only when every cached key has lapsed).
type notaryFetcher struct {
	k      *Keys
	notary Notary
}

func (n *notaryFetcher) FetcherName() string {
	return fmt.Sprintf("notary %s", n.notary.ServerName)
}

func (n *notaryFetcher) FetchKeys(ctx context.Context, requests map[gomatrixserverlib.PublicKeyLookupRequest]spec.Timestamp) (map[gomatrixserverlib.PublicKeyLookupRequest]gomatrixserverlib.PublicKeyLookupResult, error) {
	keys, err := n.notaryKeys(ctx)
	if err != nil {
		return nil, err
	}
	p := &gomatrixserverlib.PerspectiveKeyFetcher{
		PerspectiveServerName: n.notary.ServerName,
		PerspectiveServerKeys: keys,
		Client:                n.k.client,
	}
	return p.FetchKeys(ctx, requests)
}

func (n *notaryFetcher) notaryKeys(ctx context.Context) (map[gomatrixserverlib.KeyID]ed25519.PublicKey, error) {
	if len(n.notary.Keys) > 0 {
		return n.notary.Keys, nil
	}
	if keys := n.k.currentKeys(n.notary.ServerName); len(keys) > 0 {
		return keys, nil
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	resp, err := n.k.client.GetServerKeys(ctx, n.notary.ServerName)
	if err != nil {
		return nil, fmt.Errorf("serverkeys: fetch keys of notary %s: %w", n.notary.ServerName, err)
	}
	if err := n.k.saveResponse(ctx, n.notary.ServerName, resp); err != nil {
		return nil, err
	}
	keys := n.k.currentKeys(n.notary.ServerName)
	if len(keys) == 0 {
		return nil, fmt.Errorf("serverkeys: notary %s published no usable key", n.notary.ServerName)
	}
	return keys, nil
}
