package controlclient

import (
	"context"
	"net/http"

	"github.com/hearth-chat/hearth/localapi/control"
)

// Welcome returns the console's first-run section: the owner, the
// homeserver, and whether the first password may still be set.
func (c *Client) Welcome(ctx context.Context) (*control.Welcome, error) {
	var out control.Welcome
	return &out, c.do(ctx, http.MethodGet, "/_hearth/v1/welcome", nil, &out)
}

// SetFirstPassword replaces the owner's generated, unused password.
func (c *Client) SetFirstPassword(ctx context.Context, password string) (string, error) {
	var out struct {
		UserID string `json:"user_id"`
	}
	err := c.do(ctx, http.MethodPost, "/_hearth/v1/welcome/password", map[string]string{"password": password}, &out)
	return out.UserID, err
}

// WelcomeShown records that the tray opened the console's welcome; it
// reports whether this call was the first (only then does the tray open it).
func (c *Client) WelcomeShown(ctx context.Context) (bool, error) {
	var out struct{ First bool }
	err := c.do(ctx, http.MethodPost, "/_hearth/v1/welcome/shown", nil, &out)
	return out.First, err
}
