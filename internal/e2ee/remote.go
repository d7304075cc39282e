package e2ee

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/store"
)

// Remote is how the key service reaches users of other servers
// (Server-Server API §"End-to-End Encryption", §"Device Management",
// §"Send-to-device messaging"). The federation service implements it;
// without one, remote users' servers are reported in failures and
// messages to them are dropped.
type Remote interface {
	// QueryKeys asks server for its users' device and cross-signing keys
	// (POST /user/keys/query). Only DeviceKeys, MasterKeys and
	// SelfSigningKeys of the result are read.
	QueryKeys(ctx context.Context, server string, want map[string][]string) (*QueryResult, error)
	// ClaimKeys claims one-time keys of server's users (POST /user/keys/claim).
	ClaimKeys(ctx context.Context, server string, want map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error)
	// SendToDevice queues to-device messages for server's users (an
	// m.direct_to_device EDU); it returns once they are queued durably.
	SendToDevice(ctx context.Context, server, sender, evType, messageID string, messages map[string]map[string]json.RawMessage) error
	// DeviceListChanged tells the servers sharing a room with a local user
	// that the user's devices or cross-signing keys changed.
	DeviceListChanged(ctx context.Context, change DeviceListChange)
}

// DeviceListChange is what changed about a local user's devices.
type DeviceListChange struct {
	UserID       string
	Devices      []string // devices whose keys were added or re-signed
	Deleted      []string // devices removed
	CrossSigning bool     // the master or self-signing key changed or was signed
}

// remoteTimeout bounds how long /keys/query and /keys/claim wait for other
// servers: the Client-Server API's default timeout for both is 10 s.
const remoteTimeout = 10 * time.Second

// maxParallelServers bounds the servers one request asks at once.
const maxParallelServers = 16

// federationFailure is what failures holds for a remote server while
// federation is off.
var federationFailure = map[string]any{"errcode": "M_UNRECOGNIZED", "error": "federation is not available on this server"}

// SetRemote connects the federation side. Call it before serving requests.
func (s *Service) SetRemote(r Remote) { s.remote = r }

// isRemote reports whether userID is a well-formed ID of another server's
// user, whose server can be asked about it.
func (s *Service) isRemote(userID string) bool {
	return !s.IsLocal(userID) && strings.HasPrefix(userID, "@") && strings.IndexByte(userID, 0) < 0 && serverOf(userID) != ""
}

// byServer groups the remote users of m by their server.
func byServer[V any](s *Service, m map[string]V) map[string]map[string]V {
	out := map[string]map[string]V{}
	for user, v := range m {
		if !s.isRemote(user) {
			continue
		}
		srv := serverOf(user)
		if out[srv] == nil {
			out[srv] = map[string]V{}
		}
		out[srv][user] = v
	}
	return out
}

// eachServer runs fn for every server, up to maxParallelServers at once,
// all within remoteTimeout, and records the servers whose call failed in
// failures.
func eachServer[V any](s *Service, groups map[string]map[string]V, failures map[string]any, fn func(ctx context.Context, server string, want map[string]V) error) {
	if len(groups) == 0 {
		return
	}
	if s.remote == nil {
		for srv := range groups {
			failures[srv] = federationFailure
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), remoteTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxParallelServers)
	for srv, want := range groups {
		wg.Go(func() {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			case <-ctx.Done():
			}
			if err := fn(ctx, srv, want); err != nil {
				slog.Info("keys: remote server failed", "server", srv, "err", err)
				mu.Lock()
				failures[srv] = map[string]any{"errcode": "M_UNKNOWN", "error": err.Error()}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// queryRemote asks the servers of the remote users in want for their keys,
// live on every call (nothing is cached, so nothing can go stale), and
// merges what each server says about its own users into res, with the
// signature requester made of their master keys, if any (remotesign.go).
func (s *Service) queryRemote(requester string, want map[string][]string, res *QueryResult) {
	var mu sync.Mutex
	got := &QueryResult{DeviceKeys: map[string]map[string]map[string]any{}, MasterKeys: map[string]map[string]any{},
		SelfSigningKeys: map[string]map[string]any{}}
	eachServer(s, byServer(s, want), res.Failures, func(ctx context.Context, srv string, want map[string][]string) error {
		answer, err := s.remote.QueryKeys(ctx, srv, want)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		acceptQuery(want, answer, got)
		return nil
	})
	if err := s.mergeLocalSignatures(requester, got.MasterKeys); err != nil {
		slog.Warn("keys: merging signatures of remote keys", "err", err)
	}
	for user, devs := range got.DeviceKeys {
		res.DeviceKeys[user] = devs
	}
	for user, k := range got.MasterKeys {
		res.MasterKeys[user] = k
	}
	for user, k := range got.SelfSigningKeys {
		res.SelfSigningKeys[user] = k
	}
}

// acceptQuery copies from a server's answer into res what the server may
// say: keys of the users asked about (all of them its own), devices under
// their own names and only those asked for. The rest is dropped: a server
// speaks only for its users.
func acceptQuery(want map[string][]string, answer, res *QueryResult) {
	for user, devices := range want {
		devs := map[string]map[string]any{}
		for dev, obj := range answer.DeviceKeys[user] {
			if obj["user_id"] == user && obj["device_id"] == dev && (len(devices) == 0 || slices.Contains(devices, dev)) {
				if u, ok := obj["unsigned"].(map[string]any); !ok || u == nil {
					obj["unsigned"] = map[string]any{} // a missing or null unsigned: see Query
				}
				devs[dev] = obj
			}
		}
		res.DeviceKeys[user] = devs
		if k := answer.MasterKeys[user]; k != nil && k["user_id"] == user {
			res.MasterKeys[user] = k
		}
		if k := answer.SelfSigningKeys[user]; k != nil && k["user_id"] == user {
			res.SelfSigningKeys[user] = k
		}
	}
}

// claimRemote claims the remote users' one-time keys from their servers
// and merges them into keys, keeping at most one key of the algorithm
// asked for per device asked for.
func (s *Service) claimRemote(want map[string]map[string]string, keys map[string]map[string]map[string]json.RawMessage, failures map[string]any) {
	var mu sync.Mutex
	eachServer(s, byServer(s, want), failures, func(ctx context.Context, srv string, want map[string]map[string]string) error {
		got, err := s.remote.ClaimKeys(ctx, srv, want)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for user, devices := range want {
			for dev, alg := range devices {
				for name, key := range got[user][dev] {
					if !strings.HasPrefix(name, alg+":") {
						continue
					}
					if keys[user] == nil {
						keys[user] = map[string]map[string]json.RawMessage{}
					}
					keys[user][dev] = map[string]json.RawMessage{name: key}
					break
				}
			}
		}
		return nil
	})
}

// messageID names the m.direct_to_device EDU of one client request: stable
// across the client's retries, unique per (sender, device, txn), and within
// the spec's 32 characters.
func messageID(sender, device, txnID string) string {
	sum := sha256.Sum256(store.Key(sender, device, txnID))
	return base64.RawURLEncoding.EncodeToString(sum[:24])
}

// sendRemote hands the messages for remote users to their servers.
func (s *Service) sendRemote(ctx context.Context, sender, senderDevice, txnID, evType string, messages map[string]map[string]json.RawMessage) error {
	groups := byServer(s, messages)
	if len(groups) == 0 || s.remote == nil {
		return nil
	}
	id := messageID(sender, senderDevice, txnID)
	for srv, msgs := range groups {
		if err := s.remote.SendToDevice(ctx, srv, sender, evType, id, msgs); err != nil {
			return err
		}
	}
	return nil
}

// DeliverRemote queues to-device messages another server sent on behalf
// of its user sender (the m.direct_to_device EDU), for local users only:
// a server cannot make this one relay to a third. The caller has checked
// that sender belongs to the sending server. limit, when not nil, caps
// what that server may leave waiting: a device already holding
// limit(userID) or more undelivered messages from users of the sender's
// server (0: no cap) is skipped. It returns the messages it queued, by
// user and device ("*" expanded), and how many devices were skipped: the
// application services get exactly what was queued (MSC4203), so a
// stranger's cap holds for a bridge's ghosts too.
func (s *Service) DeliverRemote(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage,
	devices func(userID string) ([]string, error), limit func(userID string) int) (map[string]map[string]json.RawMessage, int, error) {
	targets, err := s.localTargets(messages, devices)
	if err != nil || len(targets) == 0 {
		return nil, 0, err
	}
	caps := map[string]int{}
	if limit != nil {
		for _, t := range targets {
			if _, ok := caps[t.user]; !ok {
				caps[t.user] = limit(t.user)
			}
		}
	}
	server := sender[strings.IndexByte(sender, ':')+1:]
	var kept []target
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		kept = targets[:0:0] // the store may re-run this function
		for _, t := range targets {
			if n := caps[t.user]; n > 0 && pendingFrom(tx, t.user, t.device, server, n) >= n {
				continue
			}
			kept = append(kept, t)
		}
		if len(kept) == 0 {
			return nil
		}
		pos, err := tx.NextPos()
		if err != nil {
			return err
		}
		return putTargets(tx, sender, evType, pos, kept)
	})
	if err != nil {
		return nil, 0, err
	}
	queued := map[string]map[string]json.RawMessage{}
	for _, t := range kept {
		if queued[t.user] == nil {
			queued[t.user] = map[string]json.RawMessage{}
		}
		queued[t.user][t.device] = t.content
	}
	return queued, len(targets) - len(kept), nil
}

// pendingFrom counts, up to max, the messages queued for a device whose
// sender is a user of server.
func pendingFrom(tx *store.Tx, user, device, server string, max int) int {
	n := 0
	prefixEach(tx, store.ToDevice, store.Key(user, device, ""), func(_, v []byte) error {
		var m struct {
			Sender string `json:"sender"`
		}
		if json.Unmarshal(v, &m) == nil && m.Sender[strings.IndexByte(m.Sender, ':')+1:] == server {
			if n++; n >= max {
				return errStop
			}
		}
		return nil
	})
	return n
}

// RemoteDeviceListChanged records that a remote user's devices or
// cross-signing keys changed (an m.device_list_update or
// m.signing_key_update from their server), the same way local changes are
// recorded, so /sync device_lists and /keys/changes report it to the local
// users sharing a room with them.
func (s *Service) RemoteDeviceListChanged(ctx context.Context, userID string) error {
	if s.IsLocal(userID) || validID("user", userID) != nil {
		return nil
	}
	return s.db.Update(ctx, func(tx *store.Tx) error { return markChanged(tx, userID) })
}

// announce tells the other servers about a change of a local user's
// devices, after it was committed. A client going away does not stop it.
func (s *Service) announce(ctx context.Context, change DeviceListChange) {
	if s.remote == nil {
		return
	}
	s.remote.DeviceListChanged(context.WithoutCancel(ctx), change)
}
