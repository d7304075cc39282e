package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The sliding sync requests and responses the bench sends and checks (MSC4186's shapes, the part it reads).

// ssList is one list of a request (SyncListConfig).
type ssList struct {
	Ranges        [][2]int    `json:"ranges"`
	TimelineLimit int         `json:"timeline_limit"`
	RequiredState [][2]string `json:"required_state"`
}

type ssRequest struct {
	ConnID     string            `json:"conn_id,omitempty"`
	Lists      map[string]ssList `json:"lists"`
	Extensions map[string]any    `json:"extensions,omitempty"`
}

// ssWindow is Element X's room list on start-up: the top 20 rooms, the
// latest event of each, and the state the list shows (name, avatar,
// encryption, the room type) plus lazily loaded members and the user's
// own membership.
func ssWindow(connID string, extensions bool) ssRequest {
	r := ssRequest{ConnID: connID, Lists: map[string]ssList{"all": {
		Ranges:        [][2]int{{0, 19}},
		TimelineLimit: 1,
		RequiredState: [][2]string{
			{"m.room.name", ""}, {"m.room.avatar", ""}, {"m.room.encryption", ""}, {"m.room.create", ""},
			{"m.room.member", "$LAZY"}, {"m.room.member", "$ME"},
		},
	}}}
	if extensions {
		// What a client keeps on in its main connection; a server that
		// does not know one ignores it (MSC4186 "Extensions").
		on := map[string]any{"enabled": true}
		r.Extensions = map[string]any{"to_device": on, "e2ee": on, "account_data": on, "receipts": on, "typing": on}
	}
	return r
}

type ssEvent struct {
	Type     string  `json:"type"`
	StateKey *string `json:"state_key"`
	Content  struct {
		Body string `json:"body"`
	} `json:"content"`
}

// ssRoom is the part of a RoomResult the bench checks.
type ssRoom struct {
	Initial        bool      `json:"initial"`
	BumpStamp      *int64    `json:"bump_stamp"`
	RequiredState  []ssEvent `json:"required_state"`
	Timeline       []ssEvent `json:"timeline"`
	TimelineEvents []ssEvent `json:"timeline_events"` // the MSC's table name for "timeline"
	Limited        bool      `json:"limited"`
}

func (r ssRoom) events() []ssEvent {
	if len(r.Timeline) > 0 {
		return r.Timeline
	}
	return r.TimelineEvents
}

type ssResponse struct {
	Pos   string `json:"pos"`
	Lists map[string]struct {
		Count int `json:"count"`
	} `json:"lists"`
	Rooms map[string]ssRoom `json:"rooms"`
	size  int               // bytes of the body
}

// ssSync does one sliding sync request; pos "" starts (or restarts) the
// connection. A non-200 answer is an error that carries the body (so an
// M_UNKNOWN_POS shows). The request's own deadline is the long poll plus
// 15 s.
func (b *bench) ssSync(ctx context.Context, u *user, pos string, timeout time.Duration, req ssRequest) (*ssResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+15*time.Second)
	defer cancel()
	q := url.Values{"timeout": {strconv.FormatInt(timeout.Milliseconds(), 10)}}
	if pos != "" {
		q.Set("pos", pos)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, "POST", u.d.base+ssPath+"?"+q.Encode(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Authorization", "Bearer "+u.token)
	hr.Header.Set("Content-Type", "application/json")
	resp, err := b.hc.Do(hr)
	if err != nil {
		if aerr := u.d.alive(); aerr != nil {
			return nil, aerr
		}
		return nil, fmt.Errorf("POST sliding sync: %w", err)
	}
	defer drain(resp)
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("POST sliding sync: read: %w", err)
	}
	if resp.StatusCode != 200 {
		return nil, newHTTPError("POST sliding sync", resp.StatusCode, data, 300)
	}
	out := &ssResponse{size: len(data)}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("POST sliding sync: decode: %w", err)
	}
	if out.Pos == "" {
		return nil, fmt.Errorf("POST sliding sync: response without pos")
	}
	return out, nil
}
