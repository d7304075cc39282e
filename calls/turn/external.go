package turn

import "time"

// Provider hands out TURN credentials: the built-in relay (*Server) or an
// external TURN server sharing a secret (External). The call agent and
// GET /voip/turnServer use either through it.
type Provider interface {
	// Credentials returns the URIs a client that reached this machine at
	// host (an IP) should use, and credentials for userID.
	Credentials(userID, host string) ([]string, Credentials)
	// ICEServers is the same for a WebRTC peer in this process.
	ICEServers(userID string) []ICEServer
}

var (
	_ Provider = (*Server)(nil)
	_ Provider = External{}
)

// External is a TURN server run elsewhere (coturn with use-auth-secret and
// static-auth-secret = Secret) that clients are pointed at instead of the
// built-in relay.
type External struct {
	URIs   []string
	Secret []byte
	TTL    time.Duration
	Now    func() time.Time // time.Now when nil
}

func (e External) Credentials(userID, _ string) ([]string, Credentials) {
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	return e.URIs, Issue(e.Secret, userID, now(), e.TTL)
}

func (e External) ICEServers(userID string) []ICEServer {
	uris, c := e.Credentials(userID, "")
	return []ICEServer{{URLs: uris, Username: c.Username, Credential: c.Password}}
}
