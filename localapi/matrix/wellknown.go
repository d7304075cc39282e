package matrix

import (
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// wellKnown serves /.well-known/matrix/client (Client-Server API
// §"Well-known URIs") so a client given only an address finds the API.
// Its CORS headers come from ServeHTTP, like every client endpoint's.
func (s *Server) wellKnown(w http.ResponseWriter, r *http.Request) error {
	matrixerr.WriteJSON(w, http.StatusOK, map[string]any{"m.homeserver": map[string]string{"base_url": s.baseURL(r)}})
	return nil
}

// baseURL is this API's address as the client of r reached it. The
// address the connection came in on is the one the client can reach: a
// phone on the LAN that reached 192.168.1.23 must not be sent to
// localhost. The Host header is the client's to choose, so it names the
// host only when it is that same address, this server's name or this
// machine's host name (or "localhost" over loopback); anything else
// would let a request (or a page rebinding DNS) make the answer point
// clients, and their passwords, elsewhere. No proxy header is trusted:
// nothing is meant to sit in front of Hearth.
func (s *Server) baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	var local netip.AddrPort
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local, _ = netip.ParseAddrPort(a.String())
	}
	localIP := local.Addr().Unmap().WithZone("")
	host, port := r.Host, ""
	if h, p, err := net.SplitHostPort(r.Host); err == nil {
		host, port = h, p
	}
	if n, err := strconv.Atoi(port); port != "" && (err != nil || n < 1 || n > 65535) {
		host, port = "", "" // not a port: the header is no address at all
	}
	if !s.ownHost(host, localIP) {
		// Nothing of the header is used, its port neither.
		host, port = s.accounts.ServerName(), ""
		if localIP.IsValid() {
			host = localIP.String()
		}
	}
	if port == "" && local.IsValid() {
		port = strconv.Itoa(int(local.Port()))
	}
	if port == "" {
		return scheme + "://" + bracket(host)
	}
	return scheme + "://" + net.JoinHostPort(strings.Trim(host, "[]"), port)
}

// ownHost reports whether a Host header's host names this server as the
// connection that carried it reached it.
func (s *Server) ownHost(host string, localIP netip.Addr) bool {
	if host == "" {
		return false
	}
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return localIP.IsValid() && ip.Unmap() == localIP
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" {
		return localIP.IsValid() && localIP.IsLoopback()
	}
	if name, _, err := net.SplitHostPort(s.accounts.ServerName()); err == nil && strings.EqualFold(host, name) {
		return true
	}
	if strings.EqualFold(host, s.accounts.ServerName()) {
		return true
	}
	if machine, err := os.Hostname(); err == nil && machine != "" {
		// The name itself, and the .local name the OS answers over mDNS
		// (its first label), which the console gives phones.
		machine = strings.ToLower(machine)
		label, _, _ := strings.Cut(machine, ".")
		return host == machine || host == label+".local"
	}
	return false
}

// bracket writes an IPv6 literal as a URL host.
func bracket(host string) string {
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
		return "[" + host + "]"
	}
	return host
}
