package matrix

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
	"github.com/hearth-chat/hearth/internal/room"
)

// specVersions are the Client-Server API versions Hearth speaks. The r0
// releases are served through the /_matrix/client/r0 aliases of the
// endpoints that still exist (routes.go).
var specVersions = []string{"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
	"v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16"}

// unstableFeatures are the flags of GET /versions (Client-Server API
// §"Server discovery", versions.yaml) that clients check before using a
// feature, whether or not it has since landed in a spec version they also
// read. Each true one names something this server implements; the false
// ones are features Element asks about that Hearth does not have (or, for
// e2ee_forced, policies it does not impose).
var unstableFeatures = map[string]bool{
	// Cross-signing keys and signatures (keys.go, internal/e2ee): without
	// it Element hides verification.
	"org.matrix.e2e_cross_signing": true,
	// Private read receipts, m.read.private (rooms.go, sync_unread.go).
	"org.matrix.msc2285.stable": true,
	// Threads: the m.thread relation, /threads (threads.go), threaded read
	// receipts (MSC3771) and per-thread unread counts (MSC3773).
	"org.matrix.msc3440.stable": true,
	"org.matrix.msc3771":        true,
	"org.matrix.msc3773":        true,
	// Authenticated media under /_matrix/client/v1/media (media.go).
	"org.matrix.msc3916.stable": true,
	// Intentional mentions: the .m.rule.is_user_mention and
	// .m.rule.is_room_mention push rules (push/defaults.go).
	"org.matrix.msc3952_intentional_mentions": true,
	// state_after in /sync with use_state_after (MSC4222, spec v1.16;
	// sync.go, internal/room/sync_state.go).
	"org.matrix.msc4222": true,
	// Invite filtering by org.matrix.msc4155.invite_permission_config
	// (internal/account/invitefilter.go, invitefilter.go).
	"org.matrix.msc4155": true,
	// Room summaries, GET /room_summary and MSC3266's unstable paths
	// (roomsummary.go).
	"im.nheko.summary":   true,
	"org.matrix.msc3266": true,
	// Simplified Sliding Sync, MSC4186 (slidingsync.go): Element X and
	// matrix-rust-sdk look for this flag before using the endpoint.
	"org.matrix.simplified_msc3575": true,
	// Not here: the room_types filter of /publicRooms, label filters.
	"org.matrix.msc3827.stable":        false,
	"org.matrix.label_based_filtering": false,
	// Encryption is the client's choice for every kind of room.
	"io.element.e2ee_forced.public":          false,
	"io.element.e2ee_forced.private":         false,
	"io.element.e2ee_forced.trusted_private": false,
}

func (s *Server) versions(w http.ResponseWriter, r *http.Request) error {
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"versions": specVersions, "unstable_features": s.unstableFeaturesNow()})
	return nil
}

func (s *Server) capabilities(w http.ResponseWriter, r *http.Request, c *caller) error {
	available := map[string]string{}
	for _, v := range room.SupportedVersions() {
		available[string(v)] = "stable"
	}
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"capabilities": map[string]any{
		"m.room_versions":   map[string]any{"default": string(s.rooms.DefaultVersion()), "available": available},
		"m.change_password": map[string]bool{"enabled": true},
		"m.set_displayname": map[string]bool{"enabled": true},
		"m.set_avatar_url":  map[string]bool{"enabled": true},
		"m.3pid_changes":    map[string]bool{"enabled": false},
		"m.get_login_token": map[string]bool{"enabled": true},
		"m.profile_fields":  map[string]any{"enabled": true, "allowed": []string{"displayname", "avatar_url"}},
		// MSC4155: this server enforces the invite permission config.
		"org.matrix.msc4155.invite_permission_config_enforced": map[string]bool{"enabled": true},
	}})
	return nil
}
