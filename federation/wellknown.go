package federation

import (
	"net/http"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// wellKnownRoutes serves /.well-known/matrix/server when the config names
// a delegated address (Server-Server API §"Resolving server names"): a
// person whose server name is their own domain can point other servers at
// wherever Hearth is reachable (a tunnel, a relay, a port-forward), and a
// Hearth that answers on port 443 of its own name can serve it itself.
func (s *Service) wellKnownRoutes() {
	if s.cfg.WellKnownServer == "" {
		return
	}
	s.mux.HandleFunc("GET /.well-known/matrix/server", func(w http.ResponseWriter, r *http.Request) {
		// Other servers cache this for up to 48 h; a day keeps a change
		// of address from taking longer than that to spread.
		w.Header().Set("Cache-Control", "max-age=86400")
		matrixerr.WriteJSON(w, http.StatusOK, map[string]string{"m.server": s.cfg.WellKnownServer})
	})
}
