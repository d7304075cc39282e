package daemon

import (
	"fmt"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Every setting is checked by the type of its key, wherever it comes from
// (file, environment, flag, control API): the config file is line-based,
// so a value with a newline written by 'hearth config set' or the console
// would add a line of its own choosing (chat_client_url injecting
// "registration = open"). The enums, numbers and lists with cross-field
// rules are checked by Validate; these are the shapes.

var (
	// hostRE is a DNS name or IPv4 address (Matrix spec, appendices:
	// server name grammar); IPv6 literals are handled apart.
	hostRE = regexp.MustCompile(`^[A-Za-z0-9.-]{1,255}$`)
	// roomVersionRE: room version identifiers are [a-z0-9.-], at most 32
	// (spec: room versions).
	roomVersionRE = regexp.MustCompile(`^[a-z0-9.-]{1,32}$`)
	// regTokenRE: registration tokens are [A-Za-z0-9._~-], at most 64
	// (spec: m.login.registration_token).
	regTokenRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,64}$`)
	// ifaceListRE: lan_interfaces, names as the OS gives them (Linux
	// allows 15 bytes; Windows friendly names may have spaces).
	ifaceListRE = regexp.MustCompile(`^[A-Za-z0-9._:@ -]{1,64}(,[A-Za-z0-9._:@ -]{1,64})*$`)
)

// valueChecks maps a key to the check of its value's shape; keys absent
// here (paths, enums, numbers, the two federation lists) are free text
// checked only for control characters, plus what Validate checks.
var valueChecks = map[string]func(string) error{
	"server_name":         checkServerName,
	"client_listen":       checkListen,
	"federation_listen":   optional(checkListen),
	"well_known_server":   optional(checkServerName),
	"chat_client_url":     optional(checkWebURL),
	"room_version":        matches(roomVersionRE, "a room version: a-z, 0-9, '.' and '-'"),
	"registration_tokens": optional(checkTokens),
	"lan_interfaces":      optional(matches(ifaceListRE, "interface names separated by commas")),
	"turn_listen":         optional(checkIPListen),
	"turn_uris":           optional(checkTURNURIs),
}

func optional(check func(string) error) func(string) error {
	return func(s string) error {
		if s == "" {
			return nil
		}
		return check(s)
	}
}

func matches(re *regexp.Regexp, what string) func(string) error {
	return func(s string) error {
		if !re.MatchString(s) {
			return fmt.Errorf("%q is not %s", s, what)
		}
		return nil
	}
}

// checkServerName: host, host:port, [IPv6] or [IPv6]:port.
func checkServerName(s string) error {
	host, port := s, ""
	if i := strings.LastIndex(s, ":"); i >= 0 && !strings.HasSuffix(s, "]") {
		host, port = s[:i], s[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' {
			return fmt.Errorf("%q: the port must be 1 to 65535", s)
		}
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		if ip := net.ParseIP(host[1 : len(host)-1]); ip == nil || ip.To4() != nil {
			return fmt.Errorf("%q is not a valid IPv6 literal", s)
		}
		return nil
	}
	if !hostRE.MatchString(host) {
		return fmt.Errorf("%q is not a host name, IP address or host:port", s)
	}
	return nil
}

// checkListen: an address to listen on, host:port (port 0: any free one).
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: the port must be 0 to 65535", s)
	}
	if host != "" && net.ParseIP(host) == nil && !hostRE.MatchString(host) {
		return fmt.Errorf("%q: %q is not a host name or IP address", s, host)
	}
	return nil
}

// checkWebURL: an absolute http or https URL (the chat client's template;
// its {placeholders} are fine where url.Parse allows braces).
func checkWebURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	return nil
}

func checkTokens(s string) error {
	for _, tok := range strings.Split(s, ",") {
		if !regTokenRE.MatchString(strings.TrimSpace(tok)) {
			return fmt.Errorf("%q is not a registration token (A-Z, a-z, 0-9, '.', '_', '~', '-'; at most 64)", tok)
		}
	}
	return nil
}

// checkShapes checks every string setting for control characters and by
// its key's shape; the error names the key.
func checkShapes(c *Config) error {
	for _, f := range fields(c) {
		if f.v.Kind() != reflect.String {
			continue
		}
		s := f.v.String()
		if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
			return fmt.Errorf("%s: control characters (here %q) are not allowed", f.key, s[i:i+1])
		}
		if f.key == "server_name" && c.serverNameFromData {
			continue // the data dir's own name (datadir.go): not ours to refuse
		}
		if f.enum != nil && !slices.Contains(f.enum, s) {
			return fmt.Errorf("%s must be %s or %s, not %q", f.key,
				strings.Join(f.enum[:len(f.enum)-1], ", "), f.enum[len(f.enum)-1], s)
		}
		if check := valueChecks[f.key]; check != nil {
			if err := check(s); err != nil {
				return fmt.Errorf("%s: %w", f.key, err)
			}
		}
	}
	return nil
}

// checkStorable refuses a value that would not read back as written: the
// file's reader trims spaces around a value and the quotes around it.
func checkStorable(value string) error {
	if strings.TrimSpace(value) != value {
		return fmt.Errorf("leading or trailing spaces would be lost in the config file")
	}
	if strings.HasPrefix(value, `"`) || strings.HasSuffix(value, `"`) {
		return fmt.Errorf("quotes around a value are not kept in the config file")
	}
	return nil
}

// checkIPListen: an IP:port or :port to listen on (the TURN relay binds
// its relays to that IP, so a host name will not do).
func checkIPListen(s string) error {
	if err := checkListen(s); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(s)
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("%q: the host must be an IP address", s)
	}
	return nil
}

// checkTURNURIs: turn: or turns: URIs (RFC 7065) separated by commas.
func checkTURNURIs(s string) error {
	for _, u := range strings.Split(s, ",") {
		u = strings.TrimSpace(u)
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") || strings.ContainsAny(u, " \"\\") {
			return fmt.Errorf("%q is not a turn: or turns: URI", u)
		}
	}
	return nil
}
