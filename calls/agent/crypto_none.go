//go:build !goolm

// Without the goolm tag mautrix-go's crypto package would link libolm
// through cgo; such a build has no E2EE devices, and the agent takes no
// part in encrypted rooms (crypto_goolm.go is the build with them).

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
)

// E2EE says whether this build's parties can be E2EE devices.
const E2EE = false

// Inbox is crypto_goolm.go's; unused here.
type Inbox interface {
	ToDevice(ctx context.Context, userID, deviceID string, since, now uint64) ([]json.RawMessage, bool, error)
	ChangedUsers(from, to uint64) ([]string, error)
	Counts(userID, deviceID string) (map[string]int, []string, error)
}

// DeviceConfig is crypto_goolm.go's.
type DeviceConfig struct {
	UserID, DeviceID string
	AccessToken      string
	Transport        http.RoundTripper
	Inbox            Inbox
	Rooms            Rooms
	Encryption       func(roomID string) json.RawMessage
	Logger           *slog.Logger
}

// NewDevice fails: this build has no end-to-end encryption.
func NewDevice(context.Context, DeviceConfig) (Crypto, error) {
	return nil, errors.New("built without end-to-end encryption (the goolm tag)")
}
