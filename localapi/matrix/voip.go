package matrix

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// TURN hands out TURN credentials (calls/turn, through the daemon; this
// package never imports pion). host is the IP the client reached this
// server at, so the built-in relay can name an address the client can
// reach; an external TURN server ignores it. ok is false while there is
// no TURN server (the relay is off).
type TURN interface {
	TURNCredentials(userID, host string) (uris []string, username, password string, ttl time.Duration, ok bool)
}

// turnLimit: a few credentials a minute per user is plenty (a client asks
// once per call set-up and when the ttl runs out), as Synapse limits it.
const (
	turnBurst = 5
	turnLeak  = 12 * time.Second
)

// voip is the state of GET /voip/turnServer.
type voip struct {
	turn    TURN
	mu      sync.Mutex
	limiter *limiter
}

func newVoip() *voip { return &voip{limiter: newLimiter(turnBurst, turnLeak, maxLimiterKeys)} }

// SetTURN sets where /voip/turnServer gets its credentials; with none it
// answers {} (no TURN server), as Synapse does without one configured.
func (s *Server) SetTURN(t TURN) { s.voip.turn = t }

func (s *Server) voipRoutes() {
	s.mux.HandleFunc("GET /_matrix/client/v3/voip/turnServer", s.authed(s.turnServer))
}

type turnServerResponse struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	URIs     []string `json:"uris"`
	TTL      int64    `json:"ttl"`
}

// turnServer: GET /_matrix/client/v3/voip/turnServer (Client-Server API
// §"Voice over IP", "TURN server information").
func (s *Server) turnServer(w http.ResponseWriter, r *http.Request, c *caller) error {
	v := s.voip
	now := time.Now()
	v.mu.Lock()
	wait := v.limiter.wait(c.UserID, now)
	if wait == 0 {
		v.limiter.add(c.UserID, 1, now)
	}
	v.mu.Unlock()
	if wait > 0 {
		return matrixerr.LimitExceeded(wait.Milliseconds())
	}
	if v.turn == nil {
		matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	}
	uris, user, pass, ttl, ok := v.turn.TURNCredentials(c.UserID, localHost(r))
	if !ok {
		matrixerr.WriteJSON(w, http.StatusOK, struct{}{})
		return nil
	}
	matrixerr.WriteJSON(w, http.StatusOK, turnServerResponse{Username: user, Password: pass, URIs: uris, TTL: int64(ttl / time.Second)})
	return nil
}

// localHost is the IP of this end of the client's connection: loopback for
// a client on this machine, the LAN address for one on the LAN.
func localHost(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap.Addr().Unmap().WithZone("").String()
		}
	}
	return "127.0.0.1"
}
