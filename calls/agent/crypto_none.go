//go:build !goolm

// Without the goolm tag mautrix-go's crypto package would link libolm
// through cgo; such a build has no E2EE devices, and the agent takes no
// part in encrypted rooms (crypto_goolm.go is the build with them).

package agent

import (
	"context"
	"errors"
)

// E2EE says whether this build's parties can be E2EE devices.
const E2EE = false

// NewDevice fails: this build has no end-to-end encryption.
func NewDevice(context.Context, DeviceConfig) (Crypto, error) {
	return nil, errors.New("built without end-to-end encryption (the goolm tag)")
}
