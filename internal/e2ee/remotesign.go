package e2ee

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Verifying a user of another server (Client-Server API §"Cross-signing"):
// the local signer signs the remote user's master key with their own
// user-signing key and uploads the signature here. It stays on this
// server, as the spec has only the signer see it: it is checked against
// the master key the remote server serves now, kept in keysignatures like
// any other signature, and merged into that key whenever a local client
// queries the remote user.

// remoteSignatures stores signer's signatures of remote users' master
// keys from body, reporting problems in failures (user → key ID → error).
func (s *Service) remoteSignatures(ctx context.Context, signer string, body map[string]map[string]json.RawMessage, failures map[string]map[string]any) error {
	fail := func(user, keyID string, e *matrixerr.Error) {
		if failures[user] == nil {
			failures[user] = map[string]any{}
		}
		failures[user][keyID] = map[string]any{"errcode": e.Code, "error": e.Message}
	}
	groups := byServer(s, body)
	if len(groups) > 0 && s.remote == nil {
		for _, objs := range groups {
			for user, keys := range objs {
				for keyID := range keys {
					fail(user, keyID, matrixerr.NotFound("unknown user or key"))
				}
			}
		}
		return nil
	}
	if len(groups) == 0 {
		return nil
	}
	masters := map[string]map[string]any{} // remote user → master key as their server serves it
	var mu sync.Mutex
	unreachable := map[string]any{}
	eachServer(s, groups, unreachable, func(ctx context.Context, srv string, objs map[string]map[string]json.RawMessage) error {
		want := map[string][]string{}
		for user := range objs {
			want[user] = []string{}
		}
		res := &QueryResult{DeviceKeys: map[string]map[string]map[string]any{}, MasterKeys: map[string]map[string]any{},
			SelfSigningKeys: map[string]map[string]any{}}
		got, err := s.remote.QueryKeys(ctx, srv, want)
		if err != nil {
			return err
		}
		acceptQuery(want, got, res)
		mu.Lock()
		defer mu.Unlock()
		for user, k := range res.MasterKeys {
			masters[user] = k
		}
		return nil
	})
	for srv, objs := range groups {
		if unreachable[srv] == nil {
			continue
		}
		for user, keys := range objs {
			for keyID := range keys {
				fail(user, keyID, matrixerr.Unknown("could not reach "+srv))
			}
		}
		delete(groups, srv)
	}
	return s.db.Update(ctx, func(tx *store.Tx) error {
		usk := publicKey(tx.Get(store.CrossSigning, store.Key(signer, userSigning)))
		for _, objs := range groups {
			for user, keys := range objs {
				for keyID, raw := range keys {
					master, _ := json.Marshal(masters[user])
					switch {
					case masters[user] == nil || validID("key ID", keyID) != nil || publicKey(master) != keyID:
						fail(user, keyID, matrixerr.NotFound("no such master key"))
						continue
					case usk == "":
						fail(user, keyID, matrixerr.NotFound("upload a user-signing key first"))
						continue
					}
					sigs, ok := signedCopy(master, raw, signer)
					if !ok {
						fail(user, keyID, matrixerr.InvalidParam("signed object does not match the master key or has no signature of yours"))
						continue
					}
					for sigKey, sig := range sigs {
						if sigKey != "ed25519:"+usk || !verifySignature(master, usk, sig) {
							fail(user, keyID, invalidSignature("another user's master key must be signed with your user-signing key"))
							sigs = nil
							break
						}
					}
					for sigKey, sig := range sigs {
						if err := tx.Put(store.KeySignatures, store.Key(user, keyID, signer, sigKey), []byte(sig)); err != nil {
							return err
						}
					}
					if len(sigs) > 0 {
						if err := markChanged(tx, user); err != nil {
							return err
						}
					}
				}
			}
		}
		return nil
	})
}

// mergeLocalSignatures adds the signatures requester made of remote
// users' master keys to the keys their servers served. Whom a user
// verified is theirs alone: other local users' signatures stay out.
func (s *Service) mergeLocalSignatures(requester string, masters map[string]map[string]any) error {
	return s.db.View(func(tx *store.Tx) error {
		for user, k := range masters {
			raw, err := json.Marshal(k)
			if err != nil || strings.IndexByte(user, 0) >= 0 {
				continue
			}
			merged, err := withSignatures(tx, raw, user, publicKey(raw))
			if err != nil {
				return err
			}
			KeepSignaturesOf(merged, user, requester)
			masters[user] = merged
		}
		return nil
	})
}

// KeepSignaturesOf drops from a key object the signatures of anyone but
// users: what a key's owner signed is public, who else signed their
// master key (who verified them) is not.
func KeepSignaturesOf(obj map[string]any, users ...string) {
	sigs, _ := obj["signatures"].(map[string]any)
	for signer := range sigs {
		if !slices.Contains(users, signer) {
			delete(sigs, signer)
		}
	}
}
