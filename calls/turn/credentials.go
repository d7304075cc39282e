// Package turn is Hearth's TURN relay (RFC 8656, through pion/turn) and
// the credential scheme clients get from GET /voip/turnServer (Client-Server
// API, "Voice over IP"). The credentials follow the TURN REST API scheme
// that coturn's use-auth-secret implements: the username is
// "<expiry unix seconds>:<user ID>" and the password is
// base64(HMAC-SHA1(secret, username)), so the same secret works with an
// external coturn as with the built-in relay.
//
// The relay relays only for those credentials, only to the networks this
// machine serves (never loopback or link-local unless configured, never the
// internet unless federation is open to it), within per-user and global
// allocation quotas and a per-allocation bandwidth cap. It must never relay
// to addresses of this machine other than its own relay ports.
package turn

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultTTL is how long credentials stay valid when the config says
// nothing (the spec's example, and Synapse's default).
const DefaultTTL = 24 * time.Hour

// Credentials are one time-limited TURN username and password.
type Credentials struct {
	Username string
	Password string
	TTL      time.Duration
}

// ICEServer is one entry of a WebRTC configuration's iceServers, in plain
// types so the call agent does not need pion's to use the relay.
type ICEServer struct {
	URLs       []string
	Username   string
	Credential string
}

// Issue makes credentials for userID valid for ttl from now.
func Issue(secret []byte, userID string, now time.Time, ttl time.Duration) Credentials {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	username := strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + userID
	return Credentials{Username: username, Password: Password(secret, username), TTL: ttl}
}

// Password is base64(HMAC-SHA1(secret, username)), the TURN REST scheme.
func Password(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

var errExpired = errors.New("TURN username expired")

// ParseUsername splits "<expiry>:<user ID>" and refuses an expired one.
func ParseUsername(username string, now time.Time) (userID string, err error) {
	exp, user, ok := strings.Cut(username, ":")
	if !ok || user == "" {
		return "", fmt.Errorf("TURN username %q is not <expiry>:<user>", username)
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return "", fmt.Errorf("TURN username %q: bad expiry: %w", username, err)
	}
	if t < now.Unix() {
		return "", fmt.Errorf("%w: %q", errExpired, username)
	}
	return user, nil
}
