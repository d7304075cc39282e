package main

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
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// newHTTPClient is the one client every request goes through: keep-alives
// on, enough idle connections per host for every concurrent user, no proxy
// (all traffic is to 127.0.0.1). Client.Timeout is the backstop behind the
// per-request contexts; it exceeds the 30 s /sync long poll.
func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         dialBench,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// nsDialers maps the host part of a namespaced daemon's base URL (see
// bench_lan.go) to the dialer into its network namespace.
var nsDialers sync.Map // string → func(ctx, network, addr string) (net.Conn, error)

// dialBench dials 127.0.0.1, or into a network namespace for the hosts
// the lan section registered in nsDialers.
func dialBench(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if f, ok := nsDialers.Load(host); ok {
		return f.(func(context.Context, string, string) (net.Conn, error))(ctx, network, net.JoinHostPort("127.0.0.1", port))
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// drain reads and closes a body so the connection can be reused.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

// user is a registered account with its access token.
type user struct {
	d     *daemon
	id    string
	token string
	txn   atomic.Int64
}

// call does one JSON request and decodes a 200 answer into out (if not
// nil); any other status is an error carrying the body. Every call has a
// timeout so nothing hangs.
func call(ctx context.Context, hc *http.Client, d *daemon, method, path, token string, body, out any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		if aerr := d.alive(); aerr != nil {
			return aerr
		}
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer drain(resp)
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return newHTTPError(method+" "+path, resp.StatusCode, msg, len(msg))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode: %w", method, path, err)
	}
	return nil
}

const reqTimeout = 20 * time.Second

func (b *bench) register(ctx context.Context, d *daemon, name string) (*user, error) {
	var out struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	body := map[string]any{"username": name, "password": "bench-password-" + name,
		"auth": map[string]string{"type": "m.login.dummy"}}
	// A loaded machine can keep every bcrypt slot busy past the server's
	// wait, and registration then answers 429: retry those a few times.
	for try := 0; ; try++ {
		err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/register", "", body, &out, reqTimeout)
		if err == nil {
			break
		}
		var he *httpError
		if try >= 10 || !errors.As(err, &he) || he.status != http.StatusTooManyRequests {
			return nil, err
		}
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
	}
	return &user{d: d, id: out.UserID, token: out.AccessToken}, nil
}

// registerMany registers n users named prefix-0 … with up to 4 requests in
// flight (each costs a bcrypt hash on the server, which has 2 per core
// hashing slots and refuses with 429 a request that waits a second for
// one: 8 in flight got 429s on a loaded machine).
func (b *bench) registerMany(ctx context.Context, d *daemon, prefix string, n int) ([]*user, error) {
	users := make([]*user, n)
	err := parallel(n, 4, func(i int) error {
		u, err := b.register(ctx, d, fmt.Sprintf("%s-%d", prefix, i))
		users[i] = u
		return err
	})
	return users, err
}

func (b *bench) createRoom(ctx context.Context, u *user) (string, error) {
	var out struct {
		RoomID string `json:"room_id"`
	}
	err := call(ctx, b.hc, u.d, "POST", "/_matrix/client/v3/createRoom", u.token,
		map[string]any{"preset": "public_chat"}, &out, reqTimeout)
	return out.RoomID, err
}

func (b *bench) join(ctx context.Context, u *user, roomID string) error {
	return call(ctx, b.hc, u.d, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), u.token,
		map[string]any{}, nil, reqTimeout)
}

// send PUTs one m.text message with a fresh transaction ID.
func (b *bench) send(ctx context.Context, u *user, roomID, text string) (string, error) {
	var out struct {
		EventID string `json:"event_id"`
	}
	txn := "t" + strconv.FormatInt(u.txn.Add(1), 10)
	err := call(ctx, b.hc, u.d, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+txn,
		u.token, map[string]string{"msgtype": "m.text", "body": text}, &out, reqTimeout)
	return out.EventID, err
}

// syncResp is the part of a /sync answer the bench looks at.
type syncResp struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events []struct {
					EventID string `json:"event_id"`
					Type    string `json:"type"`
					Content struct {
						Body string `json:"body"`
					} `json:"content"`
				} `json:"events"`
				Limited bool `json:"limited"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

// sync does GET /sync; since "" is an initial sync, filter "" the
// default filter (else inline filter JSON). The request timeout is the
// long-poll timeout plus 15 s.
func (b *bench) sync(ctx context.Context, u *user, since, filter string, timeout time.Duration) (*syncResp, error) {
	q := url.Values{"timeout": {strconv.FormatInt(timeout.Milliseconds(), 10)}}
	if since != "" {
		q.Set("since", since)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	var out syncResp
	err := call(ctx, b.hc, u.d, "GET", "/_matrix/client/v3/sync?"+q.Encode(), u.token, nil, &out, timeout+15*time.Second)
	return &out, err
}

// messages does GET /rooms/{roomId}/messages?dir=b&limit=N and returns
// how many events came back.
func (b *bench) messages(ctx context.Context, u *user, roomID string, limit int) (int, error) {
	var out struct {
		Chunk []json.RawMessage `json:"chunk"`
	}
	err := call(ctx, b.hc, u.d, "GET", fmt.Sprintf("/_matrix/client/v3/rooms/%s/messages?dir=b&limit=%d",
		url.PathEscape(roomID), limit), u.token, nil, &out, reqTimeout)
	return len(out.Chunk), err
}
