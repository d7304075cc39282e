package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"log/slog"

	"github.com/hearth-chat/hearth/appservice"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/secrets"
	"github.com/hearth-chat/hearth/internal/store"
	"github.com/hearth-chat/hearth/localapi/control"
	"github.com/hearth-chat/hearth/localapi/matrix"
)

// appserviceAPI is the registry as the client API sees it.
type appserviceAPI struct {
	*appservice.Registry // queries and ping
	q                    *appservice.Queue
}

// Presence queues a local user's presence change for the appservices
// (MSC2409).
func (a appserviceAPI) Presence(ctx context.Context, userID string, content map[string]any) {
	a.q.Presence(ctx, userID, content)
}

func (a appserviceAPI) ByToken(token string) matrix.Appservice {
	if s := a.Registry.ByToken(token); s != nil {
		return s // never a typed nil in the interface
	}
	return nil
}

// ToDevice queues to-device messages for appservice users' devices.
func (a appserviceAPI) ToDevice(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage,
	devices func(userID string) ([]string, error)) {
	if err := a.q.QueueToDevice(ctx, sender, evType, messages, devices); err != nil {
		slog.Info("appservice: queue to-device messages", "err", err)
	}
}

// appserviceE2EE is where the appservice queue gets MSC3202's device
// lists and key counts: the key store, and the client API's own
// device-list code, so that they are what /sync would say.
type appserviceE2EE struct {
	keys  *e2ee.Service
	api   *matrix.Server
	rooms *room.Engine
}

func (a appserviceE2EE) CountsOf(own func(string) bool) (map[string]map[string]e2ee.DeviceCounts, error) {
	return a.keys.CountsOf(own)
}

func (a appserviceE2EE) ChangedUsers(from, to uint64) ([]string, error) {
	return a.keys.ChangedUsers(from, to)
}

func (a appserviceE2EE) DeviceListChanges(userID string, since, now uint64) ([]string, []string, error) {
	return a.api.DeviceListChanges(userID, since, now)
}

func (a appserviceE2EE) SharesRoom(x, y string) bool { return a.rooms.SharesRoom(x, y) }

// appserviceSecrets gives the appservice registry the daemon's secret
// store, where hs_tokens live beside the signing key.
type appserviceSecrets struct{ s secrets.Store }

func (a appserviceSecrets) Get(name string) (string, error) { return a.s.Get(name) }
func (a appserviceSecrets) Set(name, value string) error    { return a.s.Set(name, value) }
func (a appserviceSecrets) Remove(name string) error {
	if err := a.s.Remove(name); err != nil && !errors.Is(err, secrets.ErrNotFound) {
		return err
	}
	return nil
}

// withAppservices opens the registry of a stopped daemon.
func withAppservices(cfg Config, fn func(*appservice.Registry) error) error {
	return whileStopped(&cfg, func(db *store.DB) error {
		sec, _, err := openSecrets(cfg)
		if err != nil {
			return err
		}
		reg, err := appservice.Open(db, account.New(db, cfg.ServerName), appserviceSecrets{sec})
		if err != nil {
			return err
		}
		return fn(reg)
	})
}

// AddAppservice registers an application service from its registration
// file's contents (hearth appservice add) while the daemon is stopped.
func AddAppservice(cfg Config, registration []byte) (string, error) {
	r, err := appservice.Parse(registration)
	if err != nil {
		return "", err
	}
	return r.ID, withAppservices(cfg, func(reg *appservice.Registry) error { return reg.Add(context.Background(), r) })
}

// RemoveAppservice deletes a registration (hearth appservice remove).
func RemoveAppservice(cfg Config, id string) error {
	return withAppservices(cfg, func(reg *appservice.Registry) error { return reg.Remove(context.Background(), id) })
}

// ListAppservices lists the registrations (hearth appservice list).
func ListAppservices(cfg Config) ([]control.Appservice, error) {
	var out []control.Appservice
	err := withAppservices(cfg, func(reg *appservice.Registry) error {
		for _, s := range reg.List() {
			out = append(out, appserviceStatus(reg, s, cfg.ServerName))
		}
		return nil
	})
	return out, err
}

func appserviceStatus(reg *appservice.Registry, s *appservice.Service, server string) control.Appservice {
	out := control.Appservice{ID: s.ID(), URL: s.Reg.URL, SenderUserID: "@" + s.SenderLocalpart() + ":" + server,
		RateLimited: s.RateLimited()}
	for _, ns := range s.Reg.Namespaces.Users {
		out.UserNamespaces = append(out.UserNamespaces, ns.Regex)
	}
	for _, ns := range s.Reg.Namespaces.Aliases {
		out.AliasNamespaces = append(out.AliasNamespaces, ns.Regex)
	}
	for _, ns := range s.Reg.Namespaces.Rooms {
		out.RoomNamespaces = append(out.RoomNamespaces, ns.Regex)
	}
	h := reg.Health(s.ID())
	out.LastSuccess, out.Queued, out.LastError, out.Dropped = h.LastSuccess, h.Queued, h.LastError, h.Dropped
	return out
}

// Appservices, AddAppservice and RemoveAppservice implement
// control.Appservices.
func (b *controlBackend) Appservices() []control.Appservice {
	var out []control.Appservice
	for _, s := range b.d.appsvc.List() {
		out = append(out, appserviceStatus(b.d.appsvc, s, b.d.cfg.ServerName))
	}
	return out
}

func (b *controlBackend) AddAppservice(registration string) (control.Appservice, error) {
	r, err := appservice.Parse([]byte(registration))
	if err == nil {
		err = b.d.appsvc.Add(context.Background(), r)
	}
	if err != nil {
		return control.Appservice{}, appserviceError(err)
	}
	return appserviceStatus(b.d.appsvc, b.d.appsvc.Get(r.ID), b.d.cfg.ServerName), nil
}

func (b *controlBackend) RemoveAppservice(id string) error {
	return appserviceError(b.d.appsvc.Remove(context.Background(), id))
}

// appserviceError turns the registry's refusals into control API errors.
func appserviceError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, appservice.ErrNotFound):
		return &control.Error{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, appservice.ErrInvalid):
		return &control.Error{Status: http.StatusBadRequest, Code: "invalid_registration", Message: err.Error()}
	}
	return fmt.Errorf("appservice: %w", err)
}
