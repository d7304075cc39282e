package room

import "encoding/json"

// A small reader of top-level members of a JSON object, for the room
// list's cold start (storedEventHead): it finds a key's value without
// decoding or validating the rest, which encoding/json always does. The
// stored JSON was checked when the event was accepted; anything this
// reader does not understand makes the caller fall back to
// encoding/json.

// jsonMember returns the raw value of key in the object js, or nil.
func jsonMember(js []byte, key string) []byte {
	i := skipSpace(js, 0)
	if i >= len(js) || js[i] != '{' {
		return nil
	}
	i++
	for {
		i = skipSpace(js, i)
		if i >= len(js) || js[i] != '"' {
			return nil
		}
		end := skipValue(js, i)
		if end < 0 {
			return nil
		}
		k := js[i+1 : end-1]
		i = skipSpace(js, end)
		if i >= len(js) || js[i] != ':' {
			return nil
		}
		i = skipSpace(js, i+1)
		vend := skipValue(js, i)
		if vend < 0 {
			return nil
		}
		if string(k) == key {
			return js[i:vend]
		}
		i = skipSpace(js, vend)
		if i >= len(js) || js[i] != ',' {
			return nil
		}
		i++
	}
}

// jsonString decodes a raw JSON string value; ok is false if v is not one.
func jsonString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	plain := true
	for _, c := range v[1 : len(v)-1] {
		if c == '\\' {
			plain = false
			break
		}
	}
	if plain {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value starting at i,
// or -1 if it is cut short.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return -1
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end := skipValue(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' &&
			b[j] != '\t' && b[j] != '\r' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}
