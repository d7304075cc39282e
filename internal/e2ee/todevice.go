package e2ee

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/hearth-chat/hearth/internal/store"
)

// toDeviceMessage is a queued to-device event as /sync serves it.
type toDeviceMessage struct {
	Sender  string          `json:"sender"`
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// SendToDevice queues one message per target device (Client-Server API
// §"Send-to-Device messaging"). messages maps user → device (or "*" for
// all of them) → content. devices lists a local user's devices; it is
// called before the write, and messages to devices that do not exist are
// dropped as the spec allows. Messages to remote users go to their servers
// (remote.go) once the local ones are committed, or are dropped while
// federation is off. A repeated (sender, device, txnID) queues nothing,
// here or remotely. All messages of one request share one stream
// position; that commit wakes the targets' syncs.
func (s *Service) SendToDevice(ctx context.Context, sender, senderDevice, txnID, evType string,
	messages map[string]map[string]json.RawMessage, devices func(userID string) ([]string, error)) error {
	targets, err := s.localTargets(messages, devices)
	if err != nil {
		return err
	}
	txnKey := store.Key(sender, senderDevice, txnID)
	fresh := false
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		fresh = false // the store may re-run this function
		if tx.Get(store.ToDeviceTxns, txnKey) != nil {
			return nil
		}
		fresh = true
		pos, err := tx.NextPos()
		if err != nil {
			return err
		}
		if err := tx.Put(store.ToDeviceTxns, txnKey, store.PutU64(pos)); err != nil {
			return err
		}
		return putTargets(tx, sender, evType, pos, targets)
	})
	if err != nil || !fresh {
		return err
	}
	return s.sendRemote(context.WithoutCancel(ctx), sender, senderDevice, txnID, evType, messages)
}

// target is one device a to-device message is queued for.
type target struct {
	user, device string
	content      json.RawMessage
}

// localTargets expands messages to the local users' existing devices.
func (s *Service) localTargets(messages map[string]map[string]json.RawMessage, devices func(userID string) ([]string, error)) ([]target, error) {
	var targets []target
	for user, byDevice := range messages {
		if !s.IsLocal(user) || strings.IndexByte(user, 0) >= 0 {
			continue
		}
		have, err := devices(user)
		if err != nil {
			return nil, err
		}
		for dev, content := range byDevice {
			for _, d := range have {
				if dev == "*" || dev == d {
					targets = append(targets, target{user, d, content})
				}
			}
		}
	}
	return targets, nil
}

// putTargets queues the messages at stream position pos.
func putTargets(tx *store.Tx, sender, evType string, pos uint64, targets []target) error {
	for _, t := range targets {
		msg := toDeviceMessage{Sender: sender, Type: evType, Content: t.content}
		if err := putJSON(tx, store.ToDevice, queueKey(t.user, t.device, pos), msg); err != nil {
			return err
		}
	}
	return nil
}

func queueKey(user, device string, pos uint64) []byte {
	return append(store.Key(user, device, ""), store.PutU64(pos)...)
}

// ToDevice returns the device's queued messages up to position now, in
// order, and whether any of them is newer than since (news for a long
// poll). Messages at or before since were delivered by the sync that
// returned since, so first they are deleted: a client acknowledges
// to-device messages by syncing with a later token.
func (s *Service) ToDevice(ctx context.Context, userID, deviceID string, since, now uint64) ([]json.RawMessage, bool, error) {
	prefix := store.Key(userID, deviceID, "")
	if err := s.AckToDevice(ctx, userID, deviceID, since); err != nil {
		return nil, false, err
	}
	out := []json.RawMessage{}
	news := false
	err := s.db.View(func(tx *store.Tx) error {
		return prefixEach(tx, store.ToDevice, prefix, func(k, v []byte) error {
			pos := store.U64(k[len(prefix):])
			if pos > now {
				return errStop
			}
			if pos > since {
				news = true
			}
			out = append(out, append(json.RawMessage(nil), v...))
			return nil
		})
	})
	if err == errStop {
		err = nil
	}
	return out, news, err
}

// errStop ends a prefix walk early.
var errStop = stopError{}

type stopError struct{}

func (stopError) Error() string { return "stop" }
