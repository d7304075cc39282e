package appservice

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// queryTimeout bounds a user, alias or third-party query: a person waits
// for its answer.
const queryTimeout = 5 * time.Second

// QueryUser asks the appservices whose users namespace holds userID
// whether it exists (GET /_matrix/app/v1/users/{userId}, Application
// Service API §"Querying"): a 200 means the appservice has just made it.
// The exclusive owner is asked first.
func (r *Registry) QueryUser(ctx context.Context, userID string) bool {
	for _, s := range r.claimants(func(s *Service) []Namespace { return s.Reg.Namespaces.Users }, userID) {
		if r.query(ctx, s, "/_matrix/app/v1/users/"+url.PathEscape(userID)) {
			return true
		}
	}
	return false
}

// QueryAlias asks the appservices whose aliases namespace holds alias
// (GET /_matrix/app/v1/rooms/{roomAlias}): a 200 means the appservice has
// just made the room and the alias.
func (r *Registry) QueryAlias(ctx context.Context, alias string) bool {
	for _, s := range r.claimants(func(s *Service) []Namespace { return s.Reg.Namespaces.Aliases }, alias) {
		if r.query(ctx, s, "/_matrix/app/v1/rooms/"+url.PathEscape(alias)) {
			return true
		}
	}
	return false
}

// claimants are the appservices with a URL whose namespaces match id,
// exclusive ones first.
func (r *Registry) claimants(nss func(*Service) []Namespace, id string) []*Service {
	var excl, other []*Service
	for _, s := range r.List() {
		if s.Reg.URL == "" {
			continue
		}
		if m, ex := matches(nss(s), id); ex {
			excl = append(excl, s)
		} else if m {
			other = append(other, s)
		}
	}
	return append(excl, other...)
}

func (r *Registry) query(ctx context.Context, s *Service, path string) bool {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	err := s.call(ctx, http.MethodGet, path, nil, nil)
	if err == nil {
		r.health.succeeded(s.ID())
		return true
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusNotFound {
		r.health.failed(s.ID(), err)
		slog.Info("appservice query failed", "appservice", s.ID(), "path", path, "err", err)
	}
	return false
}

// ThirdPartyProtocols asks each appservice for the metadata of the
// protocols its registration lists (GET
// /_matrix/app/v1/thirdparty/protocol/{protocol}), for the client's GET
// /thirdparty/protocols. A protocol whose appservice does not answer is
// left out.
func (r *Registry) ThirdPartyProtocols(ctx context.Context) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for _, s := range r.List() {
		for _, p := range s.Reg.Protocols {
			if _, done := out[p]; done || s.Reg.URL == "" {
				continue
			}
			if v, ok := r.thirdParty(ctx, s, "protocol/"+url.PathEscape(p), nil); ok {
				out[p] = v
			}
		}
	}
	return out
}

// ThirdPartyProtocol is one protocol's metadata; ok false when no
// appservice serves it.
func (r *Registry) ThirdPartyProtocol(ctx context.Context, protocol string) (json.RawMessage, bool) {
	for _, s := range r.List() {
		if slices.Contains(s.Reg.Protocols, protocol) {
			if v, ok := r.thirdParty(ctx, s, "protocol/"+url.PathEscape(protocol), nil); ok {
				return v, true
			}
		}
	}
	return nil, false
}

// ThirdPartyLookup is a location or user lookup (kind "location" or
// "user"): with a protocol, asked of the appservices that serve it (ok
// false when none does); without one (a reverse lookup by alias or user
// ID), of every appservice with protocols. The arrays are merged.
func (r *Registry) ThirdPartyLookup(ctx context.Context, kind, protocol string, q url.Values) ([]json.RawMessage, bool) {
	out := []json.RawMessage{}
	served := false
	path := kind
	if protocol != "" {
		path += "/" + url.PathEscape(protocol)
	}
	for _, s := range r.List() {
		if len(s.Reg.Protocols) == 0 || protocol != "" && !slices.Contains(s.Reg.Protocols, protocol) {
			continue
		}
		served = true
		v, ok := r.thirdParty(ctx, s, path, q)
		if !ok {
			continue
		}
		var list []json.RawMessage
		if json.Unmarshal(v, &list) == nil {
			out = append(out, list...)
		}
	}
	return out, served || protocol == ""
}

func (r *Registry) thirdParty(ctx context.Context, s *Service, path string, q url.Values) (json.RawMessage, bool) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	full := "/_matrix/app/v1/thirdparty/" + path
	if len(q) > 0 {
		full += "?" + q.Encode()
	}
	var v json.RawMessage
	if err := s.call(ctx, http.MethodGet, full, nil, &v); err != nil {
		var se *StatusError
		if !errors.As(err, &se) || se.Status != http.StatusNotFound {
			r.health.failed(s.ID(), err)
		}
		return nil, false
	}
	r.health.succeeded(s.ID())
	return v, true
}
