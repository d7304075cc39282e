// Package appservice owns Hearth's application services (Application
// Service API): their registrations, persisted in bbolt, the namespaces
// they claim and the matching against them, and the HTTP client that calls
// an appservice (ping). It never serves the Client-Server API itself:
// localapi/matrix asks it through a small interface the daemon fills.
package appservice

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Registration is the standard registration file (Application Service API
// §"Registration"), with the MSC flags mautrix bridges write.
type Registration struct {
	ID              string     `yaml:"id" json:"id"`
	URL             string     `yaml:"url" json:"url"`
	ASToken         string     `yaml:"as_token" json:"-"`
	HSToken         string     `yaml:"hs_token" json:"-"`
	SenderLocalpart string     `yaml:"sender_localpart" json:"sender_localpart"`
	RateLimited     *bool      `yaml:"rate_limited" json:"rate_limited,omitempty"`
	Namespaces      Namespaces `yaml:"namespaces" json:"namespaces"`
	Protocols       []string   `yaml:"protocols" json:"protocols,omitempty"`
	// ReceiveEphemeral asks for typing, receipts and presence in
	// transactions (MSC2409); the older key is read as the same.
	ReceiveEphemeral     bool `yaml:"receive_ephemeral" json:"receive_ephemeral,omitempty"`
	SoruReceiveEphemeral bool `yaml:"de.sorunome.msc2409.push_ephemeral" json:"-"`
	// MSC3202 (device masquerading, E2EE data in transactions) and
	// MSC4190 (device management for ghosts): either lets the
	// appservice make, use and delete its users' devices; MSC3202 also
	// puts its users' device lists and key counts in its transactions
	// (e2ee.go).
	MSC3202 bool `yaml:"org.matrix.msc3202" json:"org.matrix.msc3202,omitempty"`
	MSC4190 bool `yaml:"io.element.msc4190" json:"io.element.msc4190,omitempty"`
}

// Namespaces are the users, aliases and rooms an appservice claims.
type Namespaces struct {
	Users   []Namespace `yaml:"users" json:"users,omitempty"`
	Aliases []Namespace `yaml:"aliases" json:"aliases,omitempty"`
	Rooms   []Namespace `yaml:"rooms" json:"rooms,omitempty"`
}

// Namespace is one regular expression and whether it is exclusive.
type Namespace struct {
	Regex     string `yaml:"regex" json:"regex"`
	Exclusive bool   `yaml:"exclusive" json:"exclusive"`

	re *regexp.Regexp
}

// Parse reads a registration file and checks it on its own (Validate);
// checks against other registrations and accounts are the Registry's.
func Parse(data []byte) (*Registration, error) {
	var r Registration
	if err := yaml.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: not a registration file: %w", ErrInvalid, err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return &r, nil
}

// Validate checks the fields the spec requires and compiles the regexes.
func (r *Registration) Validate() error { return r.validate(true) }

// validate checks r; a stored registration has no tokens (withTokens
// false): they are hashed or in the secret store.
// idRE is what an appservice id may be.
var idRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,255}$`)

func (r *Registration) validate(withTokens bool) error {
	var errs []error
	if r.ID == "" {
		errs = append(errs, errors.New("id is required"))
	} else if !idRE.MatchString(r.ID) {
		// The id names its hs_token in the secret store (a file name
		// in the file store, on every system): no separators.
		errs = append(errs, errors.New("id may hold only letters, digits, '.', '_', '~' and '-', at most 255"))
	}
	if withTokens && r.ASToken == "" {
		errs = append(errs, errors.New("as_token is required"))
	}
	if withTokens && r.HSToken == "" {
		errs = append(errs, errors.New("hs_token is required"))
	}
	if r.ASToken != "" && r.ASToken == r.HSToken {
		errs = append(errs, errors.New("as_token and hs_token must differ"))
	}
	if r.SenderLocalpart == "" {
		errs = append(errs, errors.New("sender_localpart is required"))
	}
	// url may be null or empty: an appservice that receives nothing
	// (spec: "null if no traffic is required").
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("url %q must be an http or https URL", r.URL))
		}
	}
	for _, set := range []struct {
		name string
		ns   []Namespace
	}{{"users", r.Namespaces.Users}, {"aliases", r.Namespaces.Aliases}, {"rooms", r.Namespaces.Rooms}} {
		for i := range set.ns {
			re, err := regexp.Compile(set.ns[i].Regex)
			if err != nil {
				errs = append(errs, fmt.Errorf("namespaces.%s[%d]: invalid regex %q: %w", set.name, i, set.ns[i].Regex, err))
				continue
			}
			if set.ns[i].Regex == "" {
				errs = append(errs, fmt.Errorf("namespaces.%s[%d]: regex is required", set.name, i))
				continue
			}
			set.ns[i].re = re
		}
	}
	if r.SoruReceiveEphemeral {
		r.ReceiveEphemeral = true
	}
	return errors.Join(errs...)
}

// Ephemeral reports whether the appservice asked for ephemeral events.
func (r *Registration) Ephemeral() bool { return r.ReceiveEphemeral || r.SoruReceiveEphemeral }

// IsRateLimited is rate_limited, true when absent (the spec's default).
func (r *Registration) IsRateLimited() bool { return r.RateLimited == nil || *r.RateLimited }

// matches reports whether s matches one of the namespaces, and whether
// that one is exclusive. Regexes are searched, not anchored, as the
// spec's examples anchor themselves with ^ and $ where they mean to.
func matches(nss []Namespace, s string) (match, exclusive bool) {
	for _, ns := range nss {
		if ns.re != nil && ns.re.MatchString(s) {
			match = true
			if ns.Exclusive {
				return true, true
			}
		}
	}
	return match, false
}

// OwnsUser reports whether userID is the sender or in the users namespace.
func (r *Registration) OwnsUser(userID, serverName string) bool {
	if userID == "@"+r.SenderLocalpart+":"+serverName {
		return true
	}
	m, _ := matches(r.Namespaces.Users, userID)
	return m
}

// overlaps reports whether two exclusive namespaces clearly overlap. The
// intersection of two regular languages is not something Go's regexp
// decides, so this catches what a copied or nested registration looks
// like: the same regex, one regex matching the other's literal prefix
// with a sample tail, or anchored literal prefixes of which one extends
// the other ("^@bridge_" and "^@bridge_tg_").
func overlaps(a, b Namespace) bool {
	if a.re == nil || b.re == nil {
		return false
	}
	if a.Regex == b.Regex {
		return true
	}
	pa, pb := literalPrefix(a.re), literalPrefix(b.re)
	for _, tail := range []string{"", "a", "a:example.org", "1:example.org"} {
		if a.re.MatchString(pb+tail) && b.re.MatchString(pb+tail) {
			return true
		}
		if a.re.MatchString(pa+tail) && b.re.MatchString(pa+tail) {
			return true
		}
	}
	anchored := strings.HasPrefix(a.Regex, "^") && strings.HasPrefix(b.Regex, "^")
	return anchored && pa != "" && pb != "" && (strings.HasPrefix(pa, pb) || strings.HasPrefix(pb, pa))
}

func literalPrefix(re *regexp.Regexp) string {
	p, _ := re.LiteralPrefix()
	if p == "" {
		// LiteralPrefix stops at ^; read it without the anchor.
		if s, ok := strings.CutPrefix(re.String(), "^"); ok {
			if re2, err := regexp.Compile(s); err == nil {
				p, _ = re2.LiteralPrefix()
			}
		}
	}
	return p
}
