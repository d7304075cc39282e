package room

import (
	"encoding/json"
	"net"
	"strings"

	"github.com/hearth-chat/hearth/internal/store"
)

// Server access control lists (Server-Server API §"Server Access Control
// Lists", event m.room.server_acl). They act at the network layer, not in
// the auth rules: federation refuses requests and events from a denied
// server, and the outbound listing never sends a room's events to one.

// ServerAllowed reports whether the room's current server ACL lets server
// take part in it. Rooms without an ACL, and rooms this server does not
// know, allow every server.
func (e *Engine) ServerAllowed(roomID, server string) bool {
	allowed := true
	e.db.View(func(tx *store.Tx) error {
		info, err := roomInfo(tx, roomID)
		if err != nil {
			return nil
		}
		allowed = e.aclAllows(tx, info.NID, server)
		return nil
	})
	return allowed
}

// aclFilter drops the servers the room's ACL denies from servers.
func (e *Engine) aclFilter(tx *store.Tx, roomNID uint64, servers []string) []string {
	return e.aclOf(tx, roomNID).filter(servers)
}

// filter drops the servers acl denies from servers, in place; a nil acl
// (the room has none) denies nobody.
func (acl *serverACL) filter(servers []string) []string {
	if acl == nil {
		return servers
	}
	out := servers[:0]
	for _, s := range servers {
		if acl.allows(s) {
			out = append(out, s)
		}
	}
	return out
}

func (e *Engine) aclAllows(tx *store.Tx, roomNID uint64, server string) bool {
	acl := e.aclOf(tx, roomNID)
	return acl == nil || acl.allows(server)
}

// aclOf returns the room's current ACL, nil when it has none.
func (e *Engine) aclOf(tx *store.Tx, roomNID uint64) *serverACL {
	ev, err := e.currentStateEvent(tx, roomNID, "m.room.server_acl", "")
	if err != nil || ev == nil {
		return nil
	}
	acl := parseACL(ev.PDU.Content())
	return &acl
}

// serverACL is the content of an m.room.server_acl event.
type serverACL struct {
	allow, deny     []string
	allowIPLiterals bool
}

// parseACL reads an ACL leniently, as the event schema asks: entries that
// are not strings are ignored, a missing allow list allows nobody, and
// allow_ip_literals is true unless it is the boolean false.
func parseACL(content []byte) serverACL {
	var raw struct {
		Allow           []json.RawMessage `json:"allow"`
		Deny            []json.RawMessage `json:"deny"`
		AllowIPLiterals json.RawMessage   `json:"allow_ip_literals"`
	}
	json.Unmarshal(content, &raw)
	strs := func(list []json.RawMessage) []string {
		var out []string
		for _, r := range list {
			var s string
			if json.Unmarshal(r, &s) == nil {
				out = append(out, s)
			}
		}
		return out
	}
	return serverACL{allow: strs(raw.Allow), deny: strs(raw.Deny),
		allowIPLiterals: strings.TrimSpace(string(raw.AllowIPLiterals)) != "false"}
}

// allows applies the event's rules in order: IP literals, deny, allow,
// else deny. The port is never considered.
func (a serverACL) allows(server string) bool {
	host := hostOf(server)
	if !a.allowIPLiterals && isIPLiteral(host) {
		return false
	}
	for _, p := range a.deny {
		if globMatch(p, host) {
			return false
		}
	}
	for _, p := range a.allow {
		if globMatch(p, host) {
			return true
		}
	}
	return false
}

// hostOf strips the port from a server name ("[::1]:8448" → "[::1]").
func hostOf(server string) string {
	if strings.HasPrefix(server, "[") {
		if i := strings.IndexByte(server, ']'); i >= 0 {
			return server[:i+1]
		}
		return server
	}
	if i := strings.LastIndexByte(server, ':'); i >= 0 {
		return server[:i]
	}
	return server
}

func isIPLiteral(host string) bool {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		return net.ParseIP(host[1:len(host)-1]) != nil
	}
	return net.ParseIP(host) != nil
}

// globMatch matches the whole of s against a case-insensitive glob
// (Appendices §"Glob-style matching"): * is any run of characters, ? is
// exactly one. Backtracking to the last * keeps it linear in practice.
func globMatch(pattern, s string) bool {
	p, t := []rune(strings.ToLower(pattern)), []rune(strings.ToLower(s))
	pi, ti := 0, 0
	star, mark := -1, 0
	for ti < len(t) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == t[ti]):
			pi++
			ti++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ti
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			ti = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
