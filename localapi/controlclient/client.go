// Package controlclient is the Go client of Hearth's control API, used by
// the CLI and the tray. It talks over the daemon's unix socket when there
// is one and over loopback HTTP otherwise.
package controlclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/hearth-chat/hearth/localapi/control"
)

// ErrNotRunning means no daemon answered.
//
//lint:ignore ST1005 "Hearth" is a name, shown to the user as the CLI's message
var ErrNotRunning = errors.New("Hearth is not running")

// Client calls one daemon's control API.
type Client struct {
	base   string
	secret string
	http   *http.Client
}

// New returns a client for the daemon at addr (host:port), preferring the
// unix socket at socketPath when it exists.
func New(addr, socketPath, secret string) *Client {
	c := &Client{base: "http://" + addr, secret: secret, http: &http.Client{Timeout: 30 * time.Second}}
	if socketPath != "" {
		if _, err := os.Stat(socketPath); err == nil {
			c.base = "http://hearth"
			c.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socketPath)
			}}
		}
	}
	return c
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.secret)
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return ErrNotRunning
		}
		return fmt.Errorf("control API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		ce := &control.Error{Status: resp.StatusCode}
		if json.NewDecoder(resp.Body).Decode(ce) != nil || ce.Code == "" {
			return fmt.Errorf("control API: HTTP %d", resp.StatusCode)
		}
		return ce
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*control.Status, error) {
	var st control.Status
	return &st, c.do(ctx, http.MethodGet, "/_hearth/v1/status", nil, &st)
}

// Accounts lists local user IDs.
func (c *Client) Accounts(ctx context.Context) ([]string, error) {
	var out struct{ Accounts []string }
	err := c.do(ctx, http.MethodGet, "/_hearth/v1/accounts", nil, &out)
	return out.Accounts, err
}

// AddAccount creates an account; an empty password makes a random one,
// which is returned.
func (c *Client) AddAccount(ctx context.Context, name, password string) (userID, usedPassword string, err error) {
	var out struct {
		UserID   string `json:"user_id"`
		Password string `json:"password"`
	}
	err = c.do(ctx, http.MethodPost, "/_hearth/v1/accounts", map[string]string{"name": name, "password": password}, &out)
	return out.UserID, out.Password, err
}

// SetPassword changes a password; an empty one makes a random one.
func (c *Client) SetPassword(ctx context.Context, name, password string) (string, error) {
	var out struct{ Password string }
	err := c.do(ctx, http.MethodPost, "/_hearth/v1/accounts/"+url.PathEscape(name)+"/password",
		map[string]string{"password": password}, &out)
	return out.Password, err
}

// SetNearby switches whether an account is announced to people nearby.
func (c *Client) SetNearby(ctx context.Context, name string, on bool) (*control.NearbyAccount, error) {
	var out control.NearbyAccount
	return &out, c.do(ctx, http.MethodPost, "/_hearth/v1/accounts/nearby", map[string]any{"name": name, "nearby": on}, &out)
}

// NearbyAccounts lists the user IDs of the accounts announced to people nearby.
func (c *Client) NearbyAccounts(ctx context.Context) ([]string, error) {
	var out struct{ Accounts []string }
	err := c.do(ctx, http.MethodGet, "/_hearth/v1/accounts/nearby", nil, &out)
	return out.Accounts, err
}

// Config returns every setting as the daemon runs with it.
func (c *Client) Config(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	return out, c.do(ctx, http.MethodGet, "/_hearth/v1/config", nil, &out)
}

// SetConfig stores one setting; it applies when the daemon restarts.
func (c *Client) SetConfig(ctx context.Context, key, value string) error {
	return c.do(ctx, http.MethodPut, "/_hearth/v1/config/"+url.PathEscape(key), map[string]string{"value": value}, nil)
}

// Logs returns the last n log lines.
func (c *Client) Logs(ctx context.Context, n int) ([]string, error) {
	var out struct{ Lines []string }
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/_hearth/v1/logs?lines=%d", n), nil, &out)
	return out.Lines, err
}

// LoginToken makes a single-use login token for a local user.
func (c *Client) LoginToken(ctx context.Context, user string) (string, error) {
	var out struct {
		LoginToken string `json:"login_token"`
	}
	err := c.do(ctx, http.MethodPost, "/_hearth/v1/open", map[string]string{"user": user}, &out)
	return out.LoginToken, err
}

// OpenChat returns the configured chat client's address with a fresh
// login token for the owner; empty when no chat client is configured.
func (c *Client) OpenChat(ctx context.Context) (string, error) {
	var out struct {
		ClientURL string `json:"client_url"`
	}
	err := c.do(ctx, http.MethodPost, "/_hearth/v1/open", map[string]string{}, &out)
	return out.ClientURL, err
}

// ConsoleLink returns the path of a one-time login link for the web
// console, relative to the daemon's address.
func (c *Client) ConsoleLink(ctx context.Context) (string, error) {
	var out struct {
		Path string `json:"path"`
	}
	err := c.do(ctx, http.MethodPost, "/_hearth/v1/console", map[string]string{}, &out)
	return out.Path, err
}

// Shutdown asks the daemon to stop cleanly.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/_hearth/v1/shutdown", map[string]string{}, nil)
}

// Federation returns the federation side's state and destinations.
func (c *Client) Federation(ctx context.Context) (*control.FederationStatus, error) {
	var out control.FederationStatus
	return &out, c.do(ctx, http.MethodGet, "/_hearth/v1/federation", nil, &out)
}

// PauseFederation pauses (true) or resumes (false) federation.
func (c *Client) PauseFederation(ctx context.Context, paused bool) (*control.FederationStatus, error) {
	path := "/_hearth/v1/federation/resume"
	if paused {
		path = "/_hearth/v1/federation/pause"
	}
	var out control.FederationStatus
	return &out, c.do(ctx, http.MethodPost, path, nil, &out)
}

// SetFederationMode switches federation to off, lan or internet; the
// answer says whether a restart is needed to apply it.
func (c *Client) SetFederationMode(ctx context.Context, mode string) (*control.FederationStatus, error) {
	var out control.FederationStatus
	return &out, c.do(ctx, http.MethodPost, "/_hearth/v1/federation/mode", map[string]string{"mode": mode}, &out)
}

// SetDiscoveryMode switches LAN discovery to on, browse or off.
func (c *Client) SetDiscoveryMode(ctx context.Context, mode string) (*control.DiscoveryStatus, error) {
	var out control.DiscoveryStatus
	return &out, c.do(ctx, http.MethodPost, "/_hearth/v1/discovery/mode", map[string]string{"mode": mode}, &out)
}

// Peers lists the Hearth daemons found on the local network.
func (c *Client) Peers(ctx context.Context) (*control.PeersStatus, error) {
	var out control.PeersStatus
	return &out, c.do(ctx, http.MethodGet, "/_hearth/v1/peers", nil, &out)
}

// DecidePeerKey accepts (POST /_hearth/v1/peers/{name}/accept) or keeps
// refusing (/refuse) the new key a LAN peer announces.
func (c *Client) DecidePeerKey(ctx context.Context, name string, accept bool) (*control.DecideResult, error) {
	var out control.DecideResult
	verb := "refuse"
	if accept {
		verb = "accept"
	}
	return &out, c.do(ctx, http.MethodPost, "/_hearth/v1/peers/"+url.PathEscape(name)+"/"+verb, nil, &out)
}

// ForgetPeer deletes a LAN peer's pinned key (POST /_hearth/v1/peers/{name}/forget).
func (c *Client) ForgetPeer(ctx context.Context, name string) (*control.ForgetResult, error) {
	var out control.ForgetResult
	return &out, c.do(ctx, http.MethodPost, "/_hearth/v1/peers/"+url.PathEscape(name)+"/forget", nil, &out)
}

// Appservices lists the registered application services with their health.
func (c *Client) Appservices(ctx context.Context) ([]control.Appservice, error) {
	var out struct {
		Appservices []control.Appservice `json:"appservices"`
	}
	err := c.do(ctx, http.MethodGet, "/_hearth/v1/appservices", nil, &out)
	return out.Appservices, err
}

// AddAppservice registers an application service from its registration
// file's contents.
func (c *Client) AddAppservice(ctx context.Context, registration string) (*control.Appservice, error) {
	var out control.Appservice
	return &out, c.do(ctx, http.MethodPost, "/_hearth/v1/appservices", map[string]string{"registration": registration}, &out)
}

// RemoveAppservice deletes an application service's registration.
func (c *Client) RemoveAppservice(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/_hearth/v1/appservices/"+url.PathEscape(id), nil, nil)
}
