package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
)

// Inbox is where a device's incoming end-to-end encryption traffic waits
// (the daemon's *e2ee.Service): what a /sync response would carry, read
// directly rather than through /sync, because a device that long-polls
// /sync counts as the user's client being open (presence, and desktop
// notifications, which keep quiet while a client is).
type Inbox interface {
	// ToDevice returns the device's to-device messages queued up to
	// stream position now, deleting first those at or before since (the
	// ones returned before).
	ToDevice(ctx context.Context, userID, deviceID string, since, now uint64) ([]json.RawMessage, bool, error)
	// ChangedUsers is the users whose device lists changed in (from, to].
	ChangedUsers(from, to uint64) ([]string, error)
	// Counts is the device's one-time key counts by algorithm.
	Counts(userID, deviceID string) (map[string]int, []string, error)
}

// DeviceConfig is what an E2EE device of the agent needs.
type DeviceConfig struct {
	UserID, DeviceID string
	// AccessToken is the device's: the device uploads its keys, fetches
	// others' and sends to-device messages through the client API, as any
	// client device does.
	AccessToken string
	// Transport reaches the client API (the daemon's handler, in process).
	Transport http.RoundTripper
	Inbox     Inbox
	// Rooms wakes the device when the stream moves and lists the rooms
	// its user is in.
	Rooms Rooms
	// Encryption is a room's m.room.encryption content; nil if it has none.
	Encryption func(roomID string) json.RawMessage
	Logger     *slog.Logger
}
