package room

import "unicode/utf8"

// canonicalAlready reports whether b is a JSON value that canonical JSON
// (Server-Server API §"Canonical JSON") would leave byte for byte as it
// is, within a subset simple enough to check in one pass: no whitespace,
// object keys in strictly increasing byte order (UTF-8 byte order is code
// point order), strings of printable ASCII other than '"' and '\' or
// valid multi-byte UTF-8 with no escapes at all, integers of at most 15
// digits (inside every room version's safe range) without leading zeros
// or "-0", true, false and null. A false answer only means "ask
// gomatrixserverlib": buildMessage then canonicalises the content as
// before. Most clients send content this way (keys sorted or a single
// key, plain strings), and canonicalising it again was about a sixth of
// building a message (docs/performance.md "A send's CPU off the writer").
// TestCanonicalAlreadyAgreesWithGomatrixserverlib and
// FuzzCanonicalAlready hold it to gomatrixserverlib's answer.
func canonicalAlready(b []byte) bool {
	p := canonScan{b: b}
	return p.value(0) && p.i == len(b)
}

// maxCanonDepth bounds the nesting the fast path follows; deeper content
// takes the slow path (and the spec's limits).
const maxCanonDepth = 32

type canonScan struct {
	b []byte
	i int
}

func (p *canonScan) value(depth int) bool {
	if p.i >= len(p.b) || depth > maxCanonDepth {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '-' || (c >= '0' && c <= '9'):
		return p.integer()
	default:
		return p.literal("true") || p.literal("false") || p.literal("null")
	}
}

func (p *canonScan) object(depth int) bool {
	p.i++ // '{'
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	var prev []byte
	for first := true; ; first = false {
		key, ok := p.str()
		if !ok || (!first && string(key) <= string(prev)) {
			return false
		}
		prev = key
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		if !p.value(depth + 1) {
			return false
		}
		if more, ok := p.next('}'); !more {
			return ok
		}
	}
}

func (p *canonScan) array(depth int) bool {
	p.i++ // '['
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return true
	}
	for {
		if !p.value(depth + 1) {
			return false
		}
		if more, ok := p.next(']'); !more {
			return ok
		}
	}
}

// next reads what follows a member of an object or array: a ',' (more
// members follow) or its closing byte (ok, the end).
func (p *canonScan) next(closing byte) (more, ok bool) {
	if p.i >= len(p.b) {
		return false, false
	}
	switch p.b[p.i] {
	case ',':
		p.i++
		return true, true
	case closing:
		p.i++
		return false, true
	default:
		return false, false
	}
}

// str scans a string and returns its contents (between the quotes).
func (p *canonScan) str() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start := p.i + 1
	for j := start; j < len(p.b); {
		c := p.b[j]
		switch {
		case c == '"':
			p.i = j + 1
			return p.b[start:j], true
		case c == '\\' || c < 0x20 || c == 0x7f:
			return nil, false // escapes and control characters: the slow path
		case c < utf8.RuneSelf:
			j++
		default:
			r, n := utf8.DecodeRune(p.b[j:])
			if r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
				return nil, false
			}
			j += n
		}
	}
	return nil, false
}

func (p *canonScan) integer() bool {
	j := p.i
	if p.b[j] == '-' {
		j++
	}
	digits := j
	for j < len(p.b) && p.b[j] >= '0' && p.b[j] <= '9' {
		j++
	}
	n := j - digits
	if n == 0 || n > 15 || (n > 1 && p.b[digits] == '0') || (p.b[p.i] == '-' && n == 1 && p.b[digits] == '0') {
		return false
	}
	if j < len(p.b) && (p.b[j] == '.' || p.b[j] == 'e' || p.b[j] == 'E') {
		return false
	}
	p.i = j
	return true
}

func (p *canonScan) literal(s string) bool {
	if len(p.b)-p.i >= len(s) && string(p.b[p.i:p.i+len(s)]) == s {
		p.i += len(s)
		return true
	}
	return false
}

// CanonicalAlready is canonicalAlready for other packages: true only if
// b is a JSON value that gomatrixserverlib's canonical JSON leaves byte
// for byte as it is (and then it has no duplicate keys at any depth).
func CanonicalAlready(b []byte) bool { return canonicalAlready(b) }
