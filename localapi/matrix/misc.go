package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/room"
)

// specVersions are the Client-Server API versions Hearth speaks.
var specVersions = []string{"r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
	"v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16"}

func (s *Server) versions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"versions": specVersions, "unstable_features": map[string]bool{}})
}

func (s *Server) capabilities(w http.ResponseWriter, r *http.Request, c *caller) {
	available := map[string]string{}
	for _, v := range room.SupportedVersions() {
		available[string(v)] = "stable"
	}
	writeJSON(w, map[string]any{"capabilities": map[string]any{
		"m.room_versions":   map[string]any{"default": string(s.rooms.DefaultVersion), "available": available},
		"m.change_password": map[string]bool{"enabled": true},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
		"m.get_login_token": map[string]bool{"enabled": true},
		"m.profile_fields":  map[string]any{"enabled": true, "allowed": []string{"displayname", "avatar_url"}},
	}})
}

// wellKnown serves /.well-known/matrix/client so clients given only the
// server name find the API.
func (s *Server) wellKnown(w http.ResponseWriter, r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	writeJSON(w, map[string]any{"m.homeserver": map[string]string{"base_url": scheme + "://" + r.Host}})
}
