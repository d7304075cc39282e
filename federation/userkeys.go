package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/store"
)

// End-to-end encryption across servers (Server-Server API §"End-to-End
// Encryption", §"Device Management", §"Send-to-device messaging"): this
// server answers for its own users' keys and devices, asks other servers
// about theirs on behalf of local clients (as the keys service's Remote),
// and carries device-list news and to-device messages as EDUs.
//
// Device display names are never sent to other servers: they name
// people's hardware ("Alice's work laptop") and clients do not need them
// to encrypt.

// mSigningKeyUpdate is the EDU announcing new cross-signing keys
// (§"m.signing_key_update"); gomatrixserverlib has no constant for it.
const mSigningKeyUpdate = "m.signing_key_update"

// userKeysRoutes registers the user key and device endpoints.
func (s *Service) userKeysRoutes() {
	s.handle("POST /_matrix/federation/v1/user/keys/query", s.userKeysQuery)
	s.handle("POST /_matrix/federation/v1/user/keys/claim", s.userKeysClaim)
	s.handle("GET /_matrix/federation/v1/user/devices/{userID}", s.userDevices)
}

// decodeKeysRequest reads a JSON object body: M_NOT_JSON if it is not JSON,
// M_BAD_JSON if it does not have the shape of v.
func decodeKeysRequest(body []byte, v any) error {
	if !json.Valid(body) {
		return matrixerr.NotJSON("body is not valid JSON")
	}
	if b := bytes.TrimSpace(body); len(b) == 0 || b[0] != '{' {
		return matrixerr.BadJSON("body must be a JSON object")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return matrixerr.BadJSON("body does not match the spec's shape: " + err.Error())
	}
	return nil
}

// keysOff is M_UNRECOGNIZED when end-to-end encryption is not wired.
func (s *Service) keysOff() error {
	if s.cfg.Keys == nil {
		return matrixerr.Unrecognized("end-to-end encryption is not enabled")
	}
	return nil
}

func noDisplayName(string, string) string { return "" }

// localKeys reads local users' keys as other servers may see them: no
// user-signing keys (the requester is no local user), and master keys
// with their owner's signatures only, since who else signed one (who
// verified its owner) is for the signer alone to know.
func (s *Service) localKeys(want map[string][]string) (*e2ee.QueryResult, error) {
	res, err := s.cfg.Keys.Query("", want, noDisplayName)
	if err != nil {
		return nil, err
	}
	for user, k := range res.MasterKeys {
		e2ee.KeepSignaturesOf(k, user)
	}
	return res, nil
}

// userKeysQuery is POST /user/keys/query: the device and cross-signing
// keys of this server's users. Users of other servers are left out (the
// spec: "Requested users must be local to the receiving homeserver"), and
// user-signing keys never leave this server.
func (s *Service) userKeysQuery(w http.ResponseWriter, r *request) error {
	if err := s.keysOff(); err != nil {
		return err
	}
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := decodeKeysRequest(r.body, &req); err != nil {
		return err
	}
	if req.DeviceKeys == nil {
		return matrixerr.MissingParam("device_keys is required")
	}
	local := map[string][]string{}
	for user, devices := range req.DeviceKeys {
		if s.isLocalUser(user) {
			local[user] = devices
		}
	}
	res, err := s.localKeys(local)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"device_keys": res.DeviceKeys, "master_keys": res.MasterKeys,
		"self_signing_keys": res.SelfSigningKeys})
	return nil
}

// userKeysClaim is POST /user/keys/claim: one-time keys of this server's
// users' devices, each handed out once.
func (s *Service) userKeysClaim(w http.ResponseWriter, r *request) error {
	if err := s.keysOff(); err != nil {
		return err
	}
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := decodeKeysRequest(r.body, &req); err != nil {
		return err
	}
	if req.OneTimeKeys == nil {
		return matrixerr.MissingParam("one_time_keys is required")
	}
	local := map[string]map[string]string{}
	for user, devices := range req.OneTimeKeys {
		if s.isLocalUser(user) {
			local[user] = devices
		}
	}
	otks, _, err := s.cfg.Keys.Claim(r.Context(), local)
	if err != nil {
		return err
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"one_time_keys": otks})
	return nil
}

// userDevices is GET /user/devices/{userId}: a local user's devices that
// have keys, their cross-signing keys, and the stream ID the device-list
// EDUs count from. Other servers' users and unknown users get 404.
func (s *Service) userDevices(w http.ResponseWriter, r *request) error {
	if err := s.keysOff(); err != nil {
		return err
	}
	userID := r.PathValue("userID")
	if _, err := s.localUser(userID); err != nil {
		return err
	}
	streamID := s.deviceListStreamID()
	res, err := s.localKeys(map[string][]string{userID: {}})
	if err != nil {
		return err
	}
	devices := []map[string]any{}
	for id, obj := range res.DeviceKeys[userID] {
		devices = append(devices, map[string]any{"device_id": id, "keys": obj})
	}
	sort.Slice(devices, func(i, j int) bool { return devices[i]["device_id"].(string) < devices[j]["device_id"].(string) })
	out := map[string]any{"user_id": userID, "stream_id": streamID, "devices": devices}
	if k := res.MasterKeys[userID]; k != nil {
		out["master_key"] = k
	}
	if k := res.SelfSigningKeys[userID]; k != nil {
		out["self_signing_key"] = k
	}
	matrixerr.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Service) isLocalUser(userID string) bool {
	return len(userID) > 1 && userID[0] == '@' && serverOf(userID) == string(s.cfg.ServerName)
}

// deviceListStreamID is the version of local device lists that /user/devices and
// m.device_list_update carry: the store's stream position, which every
// device-list change advances, so it only grows.
func (s *Service) deviceListStreamID() int64 {
	var pos uint64
	s.cfg.DB.View(func(tx *store.Tx) error {
		pos = tx.Pos()
		return nil
	})
	return int64(pos)
}

// QueryKeys asks server for its users' keys (POST /user/keys/query). The
// answer is decoded as plain JSON, not gomatrixserverlib's typed structs,
// so that every signed field reaches the client unchanged for it to verify.
func (s *Service) QueryKeys(ctx context.Context, server string, want map[string][]string) (*e2ee.QueryResult, error) {
	body := map[string]any{"device_keys": want}
	for user, devices := range want {
		if devices == nil {
			want[user] = []string{}
		}
	}
	var raw json.RawMessage
	if err := s.signedRequest(ctx, http.MethodPost, server, "/_matrix/federation/v1/user/keys/query", body, &raw); err != nil {
		return nil, err
	}
	var res e2ee.QueryResult
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep numbers as sent: they may be signed
	if err := dec.Decode(&res); err != nil {
		return nil, err
	}
	return &res, nil
}

// ClaimKeys claims one-time keys of server's users (POST /user/keys/claim).
func (s *Service) ClaimKeys(ctx context.Context, server string, want map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	res, err := s.cfg.Client.ClaimKeys(ctx, s.cfg.ServerName, spec.ServerName(server), want)
	if err != nil {
		return nil, err
	}
	return res.OneTimeKeys, nil
}

// signedRequest sends an X-Matrix signed request and decodes the answer.
func (s *Service) signedRequest(ctx context.Context, method, server, path string, body, out any) error {
	req := fclient.NewFederationRequest(method, s.cfg.ServerName, spec.ServerName(server), path)
	if body != nil {
		if err := req.SetContent(body); err != nil {
			return err
		}
	}
	if err := req.Sign(s.cfg.ServerName, s.cfg.KeyID, s.cfg.Key); err != nil {
		return err
	}
	hr, err := req.HTTPRequest()
	if err != nil {
		return err
	}
	return s.cfg.Client.DoRequestAndParseResponse(ctx, hr, out)
}

// SendToDevice queues an m.direct_to_device EDU for server holding the
// messages for its users.
func (s *Service) SendToDevice(ctx context.Context, server, sender, evType, messageID string, messages map[string]map[string]json.RawMessage) error {
	return s.sendEDU(ctx, spec.MDirectToDevice, []string{server}, gomatrixserverlib.ToDeviceMessage{
		Sender: sender, Type: evType, MessageID: messageID, Messages: messages})
}

// DeviceListChanged sends m.device_list_update (one per changed or deleted
// device) and, when cross-signing keys changed, m.signing_key_update to
// every server sharing a room with the user. prev_id is left out: this
// server keeps no per-user update chain, so a receiver that tracks one
// resyncs through /user/devices, which the spec allows.
func (s *Service) DeviceListChanged(ctx context.Context, c e2ee.DeviceListChange) {
	if s.cfg.Keys == nil || s.cfg.Rooms == nil {
		return
	}
	dests := s.cfg.Rooms.ServersSharingRoomsWith(c.UserID)
	if len(dests) == 0 {
		return
	}
	res, err := s.localKeys(map[string][]string{c.UserID: append(append([]string{}, c.Devices...), c.Deleted...)})
	if err != nil {
		slog.Warn("federation: device list update not sent", "user", c.UserID, "err", err)
		return
	}
	s.sendDeviceList(ctx, c, res, dests)
}

// announceDevices tells the servers of a room a local user just joined
// about all of the user's devices and cross-signing keys: the spec sends
// m.device_list_update "when that user joins a room which contains
// servers which are not already receiving updates for that user's device
// list" (Server-Server API §"Device Management"), so that a server that
// caches device lists learns this one. Servers already receiving them get
// the same news again, which costs them nothing. The outbound queue calls
// it after queueing the join (federation/queue OnLocalJoin).
func (s *Service) announceDevices(ctx context.Context, userID string, dests []string) {
	if s.cfg.Keys == nil || len(dests) == 0 {
		return
	}
	res, err := s.localKeys(map[string][]string{userID: {}})
	if err != nil {
		slog.Warn("federation: devices not announced after a join", "user", userID, "err", err)
		return
	}
	c := e2ee.DeviceListChange{UserID: userID, CrossSigning: res.MasterKeys[userID] != nil}
	for dev := range res.DeviceKeys[userID] {
		c.Devices = append(c.Devices, dev)
	}
	sort.Strings(c.Devices)
	s.sendDeviceList(ctx, c, res, dests)
}

// sendDeviceList queues the EDUs of a device-list change for dests, from
// the keys read in res.
func (s *Service) sendDeviceList(ctx context.Context, c e2ee.DeviceListChange, res *e2ee.QueryResult, dests []string) {
	streamID := s.deviceListStreamID()
	var errs []error
	for _, dev := range c.Devices {
		obj := res.DeviceKeys[c.UserID][dev]
		if obj == nil {
			continue // deleted again since
		}
		k, _ := json.Marshal(obj)
		errs = append(errs, s.sendEDU(ctx, spec.MDeviceListUpdate, dests, gomatrixserverlib.DeviceListUpdateEvent{
			UserID: c.UserID, DeviceID: dev, StreamID: streamID, Keys: k}))
	}
	for _, dev := range c.Deleted {
		errs = append(errs, s.sendEDU(ctx, spec.MDeviceListUpdate, dests, gomatrixserverlib.DeviceListUpdateEvent{
			UserID: c.UserID, DeviceID: dev, StreamID: streamID, Deleted: true}))
	}
	if c.CrossSigning {
		content := map[string]any{"user_id": c.UserID}
		if k := res.MasterKeys[c.UserID]; k != nil {
			content["master_key"] = k
		}
		if k := res.SelfSigningKeys[c.UserID]; k != nil {
			content["self_signing_key"] = k
		}
		errs = append(errs, s.sendEDU(ctx, mSigningKeyUpdate, dests, content))
	}
	if err := errors.Join(errs...); err != nil {
		slog.Warn("federation: device list update not queued", "user", c.UserID, "err", err)
	}
}

// receiveDirectToDevice delivers an m.direct_to_device EDU into the local
// users' to-device queues, and hands what it queued to Config.ToDevice.
// The sender must be a user of the origin.
func (s *Service) receiveDirectToDevice(ctx context.Context, origin spec.ServerName, content []byte) (err error) {
	if s.cfg.Keys == nil {
		return nil
	}
	var m gomatrixserverlib.ToDeviceMessage
	if err := json.Unmarshal(content, &m); err != nil {
		return err
	}
	if serverOf(m.Sender) != string(origin) {
		return errNotOrigin
	}
	if m.Type == "" {
		return errors.New("to-device message without a type")
	}
	// m.direct_to_device: message_id is at most 32 code points; a longer
	// one would also be kept in toDeviceSeen, at whatever length.
	if utf8.RuneCountInString(m.MessageID) > maxMessageIDRunes {
		return errors.New("to-device message_id longer than 32 code points")
	}
	for _, byDevice := range m.Messages {
		for _, c := range byDevice {
			if len(c) == 0 || c[0] != '{' {
				return errors.New("each to-device message must be an object")
			}
		}
	}
	if m.MessageID != "" {
		if !s.toDeviceSeen.claim(m.Sender, m.MessageID) {
			return nil // a copy of one delivered: not to devices, not to appservices
		}
		defer func() {
			if err != nil {
				s.toDeviceSeen.release(m.Sender, m.MessageID)
			}
		}()
	}
	devices := func(userID string) ([]string, error) {
		devs, err := s.cfg.Accounts.Devices(s.cfg.Accounts.Localpart(userID))
		ids := make([]string, len(devs))
		for i, d := range devs {
			ids[i] = d.ID
		}
		return ids, err
	}
	queued, skipped, err := s.cfg.Keys.DeliverRemote(ctx, m.Sender, m.Type, m.Messages, devices, func(userID string) int {
		if slices.Contains(s.cfg.Rooms.ServersSharingRoomsWith(userID), string(origin)) {
			return 0
		}
		return strangerToDevicePending
	})
	if skipped > 0 {
		slog.Debug("federation: to-device messages from a server sharing no room with the target dropped",
			"origin", origin, "type", m.Type, "devices", skipped, "cap", strangerToDevicePending)
	}
	if err == nil && len(queued) > 0 && s.cfg.ToDevice != nil {
		// A bridge's ghosts never /sync: what was queued for their
		// devices goes to the appservice too (MSC4203), after the
		// checks above and the stranger cap, by the path a local
		// sender's messages take.
		s.cfg.ToDevice(context.WithoutCancel(ctx), m.Sender, m.Type, queued, devices)
	}
	return err
}

// strangerToDevicePending caps the to-device messages a server that
// shares no room with a local user may leave waiting for each of that
// user's devices (issue 10). The spec lets anyone send to-device messages
// (an invitee gets room keys before joining), so they are not refused
// outright, but a stranger cannot fill the store: past the cap, its new
// messages are dropped until the device has synced the waiting ones.
const strangerToDevicePending = 100

// receiveDeviceListNews handles m.device_list_update and
// m.signing_key_update: nothing of the remote keys is stored (clients'
// queries go to the user's server live), so it only records that the
// user's list changed, for local users sharing a room with them, whose
// clients then query again. Users no local user shares a room with are
// ignored.
func (s *Service) receiveDeviceListNews(ctx context.Context, origin spec.ServerName, content []byte) error {
	if s.cfg.Keys == nil {
		return nil
	}
	var u struct {
		UserID string `json:"user_id"`
	}
	if err := json.Unmarshal(content, &u); err != nil {
		return err
	}
	if serverOf(u.UserID) != string(origin) || u.UserID == "" || u.UserID[0] != '@' {
		return errNotOrigin
	}
	if !s.cfg.Rooms.SharesRoomWithLocalUser(u.UserID) {
		return nil
	}
	return s.cfg.Keys.RemoteDeviceListChanged(ctx, u.UserID)
}
