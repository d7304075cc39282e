package matrix

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Sliding sync extensions (MSC4186 §"Extensions", with the shapes of
// MSC3885 to_device, MSC3884 e2ee, MSC3959 account_data, MSC3960
// receipts and MSC3961 typing, as clients send them). Each is off unless
// the request enables it; unknown extensions are ignored.

type slidingExtensions struct {
	toDevice    *toDeviceExt
	e2ee        bool
	accountData *roomScopedExt
	receipts    *roomScopedExt
	typing      *roomScopedExt
}

type toDeviceExt struct {
	Enabled *bool   `json:"enabled"`
	Limit   *int64  `json:"limit"`
	Since   *string `json:"since"`
}

// roomScopedExt is an extension that applies to some rooms: those of the
// named lists (all lists when lists is absent) and the named
// subscriptions ("*", or absent: all of them).
type roomScopedExt struct {
	Enabled *bool     `json:"enabled"`
	Lists   *[]string `json:"lists"`
	Rooms   *[]string `json:"rooms"`
}

func parseSlidingExtensions(raw map[string]json.RawMessage) (*slidingExtensions, error) {
	x := &slidingExtensions{}
	var err error
	enabled := func(b *bool) bool { return b != nil && *b }
	if v, ok := raw["to_device"]; ok {
		var td toDeviceExt
		if err = json.Unmarshal(v, &td); err != nil {
			return nil, matrixerr.BadJSON("bad to_device extension")
		}
		if td.Limit != nil && *td.Limit < 0 {
			return nil, matrixerr.InvalidParam("to_device limit must not be negative")
		}
		if enabled(td.Enabled) {
			x.toDevice = &td
		}
	}
	if v, ok := raw["e2ee"]; ok {
		var e struct {
			Enabled *bool `json:"enabled"`
		}
		if err = json.Unmarshal(v, &e); err != nil {
			return nil, matrixerr.BadJSON("bad e2ee extension")
		}
		x.e2ee = enabled(e.Enabled)
	}
	for name, dst := range map[string]**roomScopedExt{"account_data": &x.accountData, "receipts": &x.receipts, "typing": &x.typing} {
		v, ok := raw[name]
		if !ok {
			continue
		}
		var ext roomScopedExt
		if err = json.Unmarshal(v, &ext); err != nil {
			return nil, matrixerr.BadJSON("bad " + name + " extension")
		}
		if enabled(ext.Enabled) {
			*dst = &ext
		}
	}
	return x, nil
}

// rooms lists the rooms of the response's lists and subscriptions the
// extension applies to.
func (ext *roomScopedExt) rooms(p *parsedSliding, picks map[string]*slidingPick) []string {
	var out []string
	for id, pk := range picks {
		in := false
		for _, l := range pk.lists {
			if ext.Lists == nil || slices.Contains(*ext.Lists, l) {
				in = true
			}
		}
		if _, sub := p.subs[id]; sub && (ext.Rooms == nil || slices.Contains(*ext.Rooms, "*")) {
			in = true
		}
		if ext.Rooms != nil && slices.Contains(*ext.Rooms, id) {
			in = true
		}
		if in {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// slidingExtensions fills resp.Extensions from base's positions to next's
// and reports whether any of it is news. fresh are the rooms this
// response sends for the first time on the connection, which get their
// receipts, typing and account data whole.
func (s *Server) slidingExtensions(ctx context.Context, c *caller, x *slidingExtensions, p *parsedSliding,
	picks map[string]*slidingPick, fresh map[string]bool, base, next *slidingState, resp *slidingResponse) (bool, error) {
	news := false
	now := next.pos
	// The to_device since the client sends is the position of a response
	// it processed, kept by the client across connections.
	var clientSince uint64
	if x.toDevice != nil && x.toDevice.Since != nil {
		if v, err := strconv.ParseUint(*x.toDevice.Since, 10, 64); err == nil {
			clientSince = min(v, now)
		}
	}
	if x.toDevice != nil && s.keys != nil {
		since := base.toDevice
		if x.toDevice.Since != nil {
			since = clientSince
		}
		// A since from the future would acknowledge messages never sent.
		since = min(since, now)
		// The sync's own context is not passed down, as in /sync: deleting
		// acknowledged messages should finish even if the client went away.
		msgs, more, err := s.keys.ToDevice(context.Background(), c.UserID, c.DeviceID, since, now)
		if err != nil {
			return false, err
		}
		if msgs == nil {
			msgs = []json.RawMessage{}
		}
		next.toDevice = now
		resp.Extensions["to_device"] = map[string]any{"next_batch": strconv.FormatUint(now, 10), "events": msgs}
		news = news || more
	}
	if x.e2ee && s.keys != nil {
		since := base.pos
		if since == 0 {
			// A new connection (after M_UNKNOWN_POS, a restart) still owes
			// the client the device-list changes since the last response
			// it processed, or it would keep encrypting to stale devices.
			since = clientSince
		}
		e, more, err := s.slidingE2EE(c, since, now)
		if err != nil {
			return false, err
		}
		resp.Extensions["e2ee"] = e
		news = news || more
	}
	if x.accountData != nil {
		global, perRoom, err := s.accounts.AccountDataSince(c.Localpart, base.accountDP, now)
		if err != nil {
			return false, err
		}
		rooms := map[string][]json.RawMessage{}
		var whole map[string][]json.RawMessage
		for _, id := range x.accountData.rooms(p, picks) {
			evs := perRoom[id]
			if fresh[id] && base.accountDP != 0 {
				if whole == nil {
					if _, whole, err = s.accounts.AccountDataSince(c.Localpart, 0, now); err != nil {
						return false, err
					}
				}
				evs = whole[id]
			}
			if len(evs) > 0 {
				rooms[id] = evs
			}
		}
		if global == nil {
			global = []json.RawMessage{}
		}
		resp.Extensions["account_data"] = map[string]any{"global": global, "rooms": rooms}
		next.accountDP = now
		news = news || len(global) > 0 || len(rooms) > 0
	}
	if x.receipts != nil {
		since := base.pos
		rc, err := s.rooms.SlidingReceipts(c.UserID, x.receipts.rooms(p, picks), fresh, since, now)
		if err != nil {
			return false, err
		}
		resp.Extensions["receipts"] = map[string]any{"rooms": rc}
		news = news || len(rc) > 0
	}
	if x.typing != nil {
		since := base.eph
		if base.pos == 0 {
			since = 0
		}
		ty := s.rooms.SlidingTyping(x.typing.rooms(p, picks), fresh, since)
		resp.Extensions["typing"] = map[string]any{"rooms": ty}
		news = news || len(ty) > 0
	}
	return news, nil
}

// slidingE2EE is the e2ee extension: device_lists, one-time key counts
// and unused fallback key types, worked out as /sync's (sync_e2ee.go
// deviceListChanges) from the member events of all the user's rooms.
func (s *Server) slidingE2EE(c *caller, since, now uint64) (map[string]any, bool, error) {
	counts, fallback, err := s.keys.Counts(c.UserID, c.DeviceID)
	if err != nil {
		return nil, false, err
	}
	if fallback == nil {
		fallback = []string{}
	}
	out := map[string]any{"device_one_time_keys_count": counts, "device_unused_fallback_key_types": fallback,
		"device_lists": map[string]any{"changed": []string{}, "left": []string{}}}
	if since == 0 {
		return out, false, nil // an initial sync has no device-list changes
	}
	changed, gone, err := s.DeviceListChanges(c.UserID, since, now)
	if err != nil {
		return nil, false, err
	}
	out["device_lists"] = map[string]any{"changed": changed, "left": gone}
	return out, len(changed) > 0 || len(gone) > 0, nil
}

// DeviceListChanges is the device_lists of userID between two stream
// positions, worked out as /sync's (deviceListChanges) from the member
// events of all the user's rooms: for sliding sync's e2ee extension and
// for an application service's transactions (MSC3202), whose users never
// sync.
func (s *Server) DeviceListChanges(userID string, since, now uint64) (changed, left []string, err error) {
	if s.keys == nil {
		return nil, nil, nil
	}
	joinedEvs, leftEvs, err := s.rooms.MemberEventsSince(userID, since, now)
	if err != nil {
		return nil, nil, err
	}
	joined, leftRooms := map[string][]any{}, [][]any{}
	for id, evs := range joinedEvs {
		for _, ev := range evs {
			joined[id] = append(joined[id], ev)
		}
	}
	for _, evs := range leftEvs {
		l := make([]any, len(evs))
		for i, ev := range evs {
			l[i] = ev
		}
		leftRooms = append(leftRooms, l)
	}
	return s.deviceListChanges(&caller{UserID: userID}, since, now, joined, leftRooms)
}
