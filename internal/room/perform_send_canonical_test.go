package room

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
)

// canonicalSame fails t if canonicalAlready accepts b but some room
// version's EnforcedCanonicalJSON would refuse it or change a byte.
func canonicalSame(t testing.TB, b []byte) bool {
	t.Helper()
	if !canonicalAlready(b) {
		return false
	}
	for v := range gomatrixserverlib.RoomVersions() {
		got, err := gomatrixserverlib.EnforcedCanonicalJSON(b, v)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("canonicalAlready(%q) but room version %s gives %q, %v", b, v, got, err)
		}
	}
	return true
}

// TestCanonicalAlreadyAgreesWithGomatrixserverlib: whatever the fast path
// of buildMessage accepts as already canonical, gomatrixserverlib (the
// authority) leaves unchanged in every room version; typical client
// content is accepted; anything that is not canonical, or outside the
// subset, is not.
func TestCanonicalAlreadyAgreesWithGomatrixserverlib(t *testing.T) {
	yes := []string{
		`{}`, `[]`, `{"body":"hello","msgtype":"m.text"}`,
		`{"body":"ünïcödé 🎉 日本語","format":"org.matrix.custom.html","formatted_body":"<b>x</b>","msgtype":"m.text"}`,
		`{"a":[1,-2,0,true,false,null,{"b":{}}],"b":"","c":999999999999999,"d":-999999999999999}`,
		`{"m.relates_to":{"event_id":"$abc","rel_type":"m.thread"},"url":"mxc://a/b"}`,
		`{"A":1,"B":2,"a":3,"aa":4,"b":5}`, `{"é":1,"😀":2}`, `"x"`, `0`,
	}
	for _, s := range yes {
		if !canonicalSame(t, []byte(s)) {
			t.Errorf("canonicalAlready(%s) = false, want true", s)
		}
	}
	no := []string{
		``, ` {}`, `{} `, `{ }`, `{"b":1,"a":2}`, `{"a":1,"a":2}`, `{"a" :1}`, `{"a":1,}`, `[1,]`,
		`{"a":"\n"}`, `{"a":"\u0041"}`, `{"a":"\/"}`, `{"a":"x` + "\x01" + `"}`, `{"a":"` + "\xff" + `"}`,
		`{"a":"` + "\u2028" + `"}`, `{"a":1.5}`, `{"a":1e3}`, `{"a":-0}`, `{"a":01}`, `{"a":9007199254740992}`,
		`{"a":1000000000000000}`, `{"a":tru}`, `{"a":nul}`, `{"a"}`, `{"a":}`, `{`, `[`, `"abc`, `{"a":1}}`,
		strings.Repeat("[", 40) + strings.Repeat("]", 40),
	}
	for _, s := range no {
		if canonicalAlready([]byte(s)) {
			t.Errorf("canonicalAlready(%q) = true, want false", s)
		}
	}

	// Random content, canonicalised by gomatrixserverlib: most of it is
	// in the subset and must be accepted as it is; its compact but
	// unsorted encoding must not be, unless it is sorted already.
	r := rand.New(rand.NewPCG(15, 15))
	accepted := 0
	for range 3000 {
		v := randomJSON(r, 0)
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		canon, err := gomatrixserverlib.CanonicalJSON(raw)
		if err != nil {
			continue
		}
		if canonicalSame(t, canon) {
			accepted++
		}
		canonicalSame(t, raw) // json.Marshal escapes <, >, & and sorts map keys
		unsorted := unsortedJSON(v)
		canonicalSame(t, unsorted)
	}
	if accepted < 1500 {
		t.Errorf("only %d of 3000 canonical values were taken as already canonical", accepted)
	}
}

// FuzzCanonicalAlready: nothing canonicalAlready accepts is changed or
// refused by gomatrixserverlib.
func FuzzCanonicalAlready(f *testing.F) {
	for _, s := range []string{`{"body":"hello","msgtype":"m.text"}`, `{"a":[1,{"b":null}],"c":"é"}`, `{"b":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { canonicalSame(t, b) })
}

var randomRunes = []rune("abcAZ_.$:@ 09<>&\"\\/\n\téü日🎉\u2028\u007f")

func randomString(r *rand.Rand) string {
	var b strings.Builder
	for range r.IntN(6) {
		b.WriteRune(randomRunes[r.IntN(len(randomRunes))])
	}
	return b.String()
}

func randomJSON(r *rand.Rand, depth int) any {
	k := r.IntN(8)
	if depth > 3 && k < 3 {
		k += 3
	}
	switch k {
	case 0, 1:
		m := map[string]any{}
		for range r.IntN(5) {
			m[randomString(r)] = randomJSON(r, depth+1)
		}
		return m
	case 2:
		a := []any{}
		for range r.IntN(4) {
			a = append(a, randomJSON(r, depth+1))
		}
		return a
	case 3, 4:
		return randomString(r)
	case 5:
		return json.Number([]string{"0", "-1", "42", "999999999999999", "-999999999999999", "1.5", "12345678901234567"}[r.IntN(7)])
	case 6:
		return r.IntN(2) == 0
	default:
		return nil
	}
}

// unsortedJSON encodes v compactly with each object's keys in reverse
// order.
func unsortedJSON(v any) []byte {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sortStrings(keys)
		var b bytes.Buffer
		b.WriteByte('{')
		for i := len(keys) - 1; i >= 0; i-- {
			if i != len(keys)-1 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(keys[i])
			b.Write(kb)
			b.WriteByte(':')
			b.Write(unsortedJSON(x[keys[i]]))
		}
		b.WriteByte('}')
		return b.Bytes()
	case []any:
		var b bytes.Buffer
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(unsortedJSON(e))
		}
		b.WriteByte(']')
		return b.Bytes()
	default:
		b, _ := json.Marshal(x)
		return b
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
