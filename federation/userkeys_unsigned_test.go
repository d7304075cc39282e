package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/tidwall/gjson"
)

// TestDeviceKeysCarryUnsignedObject: every device-key object this server
// hands to another one — in /user/keys/query, in /user/devices and in the
// m.device_list_update EDU — has "unsigned" as a JSON object (empty when
// there is nothing to say). Another implementation relays the keys as
// given, and a missing unsigned there becomes "unsigned": null, which
// the Rust crypto SDK treats as an invalid device.
func TestDeviceKeysCarryUnsignedObject(t *testing.T) {
	n := newUKNet()
	hs1, hs2, alice, _, _ := sharedRoom(t, n, true)

	sent := recordSends(t, n, hs2)

	isObject := func(what string, keys gjson.Result) {
		t.Helper()
		if !keys.Exists() {
			t.Fatalf("%s: no device keys", what)
		}
		if u := keys.Get("unsigned"); !u.IsObject() {
			t.Errorf("%s: unsigned = %s, want an object (%s)", what, u.Raw, keys.Raw)
		}
	}
	_, _, out := hs2.call(t, "POST", "hs1.test", "/_matrix/federation/v1/user/keys/query",
		map[string]any{"device_keys": map[string]any{alice: []string{}}})
	b, _ := json.Marshal(out)
	isObject("/user/keys/query", gjson.GetBytes(b, "device_keys."+gjson.Escape(alice)+".ADEV"))

	_, _, out = hs2.call(t, "GET", "hs1.test", "/_matrix/federation/v1/user/devices/"+alice, nil)
	b, _ = json.Marshal(out)
	isObject("/user/devices", gjson.GetBytes(b, "devices.0.keys"))

	// A new device of alice's goes to hs2 as m.device_list_update.
	if _, err := hs1.accounts.Login(context.Background(), "alice", "ADEV2", "", false); err != nil {
		t.Fatal(err)
	}
	hs1.uploadDevice(t, alice, "ADEV2")
	var edu gjson.Result
	ukWaitFor(t, "the device list update at hs2", func() bool {
		for _, txn := range sent() {
			for _, e := range gjson.GetBytes(txn, "edus").Array() {
				if e.Get("edu_type").String() == "m.device_list_update" && e.Get("content.device_id").String() == "ADEV2" {
					edu = e
					return true
				}
			}
		}
		return false
	})
	isObject("m.device_list_update", edu.Get("content.keys"))
}

// recordSends routes n's requests for s through a recorder that keeps the
// body of every /send transaction s receives; the returned function
// lists them so far.
func recordSends(t *testing.T, n *ukNet, s *ukServer) func() [][]byte {
	var mu sync.Mutex
	var txns [][]byte
	inner := s.svc.Handler()
	rec := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && bytes.Contains([]byte(r.URL.Path), []byte("/federation/v1/send/")) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			txns = append(txns, b)
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.Close)
	n.mu.Lock()
	n.servers[s.name] = rec
	n.mu.Unlock()
	return func() [][]byte {
		mu.Lock()
		defer mu.Unlock()
		return append([][]byte(nil), txns...)
	}
}
