package push

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hearth-chat/hearth/internal/netscope"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// Pusher is one registered pusher (Client-Server API §"GET /pushers").
type Pusher struct {
	AppDisplayName    string         `json:"app_display_name"`
	AppID             string         `json:"app_id"`
	Data              map[string]any `json:"data"`
	DeviceDisplayName string         `json:"device_display_name"`
	Kind              string         `json:"kind"`
	Lang              string         `json:"lang"`
	ProfileTag        string         `json:"profile_tag,omitempty"`
	Pushkey           string         `json:"pushkey"`
	PushkeyTS         int64          `json:"pushkey_ts,omitempty"`
	UserID            string         `json:"-"`
}

// SetRequest is the body of POST /pushers/set.
type SetRequest struct {
	Pusher
	Kind   *string `json:"kind"`
	Append bool    `json:"append"`
	// Device is the device whose access token set the pusher (not from
	// the body): a password change keeps that device's pushers only.
	Device string `json:"-"`
}

// storedPusher is a pusher as kept in the store: the client's fields and
// the device that set it, which clients never see.
type storedPusher struct {
	Pusher
	Device string `json:"hearth_device,omitempty"`
}

func pusherKey(userID, appID, pushkey string) []byte { return store.Key(userID, appID, pushkey) }

// Pushers lists the user's pushers.
func (s *Service) Pushers(userID string) ([]Pusher, error) {
	out := []Pusher{}
	err := s.db.View(func(tx *store.Tx) error {
		prefix := store.Key(userID, "")
		c := tx.Cursor(store.Pushers)
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			var p Pusher
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("push: decode pusher: %w", err)
			}
			p.UserID = userID
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// SetPusher creates, replaces or (kind null) deletes a pusher
// (Client-Server API §"POST /pushers/set"). Only kind "http" is supported;
// its data.url must be an http(s) URL of a push gateway on a public
// address. Bad input is M_MISSING_PARAM or M_INVALID_PARAM and stores nothing.
func (s *Service) SetPusher(ctx context.Context, userID string, req SetRequest) error {
	if req.AppID == "" || req.Pushkey == "" {
		return matrixerr.MissingParam("app_id and pushkey are required")
	}
	if len(req.AppID) > 64 || len(req.Pushkey) > 512 {
		return matrixerr.InvalidParam("app_id is at most 64 bytes, pushkey at most 512")
	}
	if req.Kind == nil {
		return s.db.Update(ctx, func(tx *store.Tx) error {
			return deletePusherTx(tx, pusherKey(userID, req.AppID, req.Pushkey))
		})
	}
	if *req.Kind != "http" {
		return matrixerr.InvalidParam("only kind http is supported")
	}
	if req.AppDisplayName == "" || req.DeviceDisplayName == "" || req.Lang == "" {
		return matrixerr.MissingParam("app_display_name, device_display_name and lang are required")
	}
	u, _ := req.Data["url"].(string)
	if u == "" {
		return matrixerr.MissingParam("data.url is required for http pushers")
	}
	if err := s.checkGatewayURL(ctx, u); err != nil {
		return err
	}
	if f, ok := req.Data["format"]; ok && f != "event_id_only" {
		return matrixerr.InvalidParam("data.format may only be event_id_only")
	}
	p := storedPusher{Pusher: req.Pusher, Device: req.Device}
	p.Kind = "http"
	p.PushkeyTS = s.now().UnixMilli()
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("push: encode pusher: %w", err)
	}
	return s.db.Update(ctx, func(tx *store.Tx) error {
		if !req.Append {
			// Spec: without append, the same app ID and pushkey registered
			// by other users is removed.
			var others [][]byte
			c := tx.Cursor(store.Pushers)
			for k, _ := c.First(); k != nil; k, _ = c.Next() {
				parts := strings.Split(string(k), "\x00")
				if len(parts) == 3 && parts[0] != userID && parts[1] == req.AppID && parts[2] == req.Pushkey {
					others = append(others, append([]byte(nil), k...))
				}
			}
			for _, k := range others {
				if err := deletePusherTx(tx, k); err != nil {
					return err
				}
			}
		}
		return tx.Put(store.Pushers, pusherKey(userID, req.AppID, req.Pushkey), b)
	})
}

// RemovePushersExcept deletes the user's pushers but those set by the
// device keepDevice, as a password change that logs out the other devices
// does (Synapse removes the pushers of every revoked access token;
// Complement TestChangePasswordPushers). Pushers from before devices were
// recorded count as another device's.
func (s *Service) RemovePushersExcept(ctx context.Context, userID, keepDevice string) error {
	return s.removePushers(ctx, userID, func(p *storedPusher) bool { return p.Device != keepDevice })
}

// RemovePushersOf deletes the pushers that the given devices set, as
// they are deleted (log out, device deletion).
func (s *Service) RemovePushersOf(ctx context.Context, userID string, devices []string) error {
	return s.removePushers(ctx, userID, func(p *storedPusher) bool { return slices.Contains(devices, p.Device) })
}

// RemovePushers deletes every pusher of the user, with what is queued for
// them, in one transaction (account deactivation).
func (s *Service) RemovePushers(ctx context.Context, userID string) error {
	return s.removePushers(ctx, userID, func(*storedPusher) bool { return true })
}

// removePushers deletes the user's pushers that doomed picks (and any it
// cannot read).
func (s *Service) removePushers(ctx context.Context, userID string, doomed func(*storedPusher) bool) error {
	return s.db.Update(ctx, func(tx *store.Tx) error {
		var keys [][]byte
		prefix := store.Key(userID, "")
		c := tx.Cursor(store.Pushers)
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			var p storedPusher
			if json.Unmarshal(v, &p) != nil || doomed(&p) {
				keys = append(keys, append([]byte(nil), k...))
			}
		}
		for _, k := range keys {
			if err := deletePusherTx(tx, k); err != nil {
				return fmt.Errorf("push: remove pusher of %s: %w", userID, err)
			}
		}
		return nil
	})
}

// deletePusherTx removes a pusher and everything queued for it.
func deletePusherTx(tx *store.Tx, key []byte) error {
	if err := tx.Delete(store.Pushers, key); err != nil {
		return err
	}
	prefix := append(append([]byte(nil), key...), 0)
	var queued [][]byte
	c := tx.Cursor(store.PushQueue)
	for k, _ := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, _ = c.Next() {
		queued = append(queued, append([]byte(nil), k...))
	}
	for _, k := range queued {
		if err := tx.Delete(store.PushQueue, k); err != nil {
			return err
		}
	}
	return nil
}

// checkGatewayURL validates a pusher's data.url: http(s), a host, and
// (unless the options allow private gateways) only public addresses
// (internal/netscope). A
// name that does not resolve now is accepted; the dialer checks again at
// delivery time, which also defeats DNS rebinding.
func (s *Service) checkGatewayURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" || u.User != nil {
		return matrixerr.InvalidParam("data.url must be an http or https URL")
	}
	if s.opts.AllowPrivateGateways {
		return nil
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return matrixerr.InvalidParam("data.url may not point at a loopback address")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !netscope.Public(a) {
			return matrixerr.InvalidParam("data.url may not point at a private or loopback address")
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if !netscope.Public(a) {
			return matrixerr.InvalidParam("data.url resolves to a private or loopback address")
		}
	}
	return nil
}

// gatewayClient is the HTTP client for push gateways. Unless private
// gateways are allowed, its dialer refuses non-public addresses after
// resolution, whatever the name said at registration.
func gatewayClient(allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !netscope.Public(ap.Addr()) {
				return fmt.Errorf("push: gateway address %s is not public", address)
			}
			return nil
		}
	}
	tr := &http.Transport{DialContext: d.DialContext, Proxy: nil, MaxIdleConnsPerHost: 2,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 20 * time.Second}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
