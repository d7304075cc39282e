package main

import (
	"context"
	"fmt"
	"time"
)

// benchKeys measures the E2EE key endpoints a client hits when it starts
// encrypting for a room: one user logs in 50 devices, each uploading device
// keys and 100 signed one-time keys; a second user then times 200
// POST /keys/query for all 50 devices and 100 POST /keys/claim that take
// one key from each of the 50 devices (every claim consumes 50 keys).
func benchKeys(ctx context.Context, b *bench) []row {
	const devices, otks = 50, 100
	qMetric := fmt.Sprintf("POST /keys/query, %d devices (p50 of 200)", devices)
	cMetric := fmt.Sprintf("POST /keys/claim, one key from each of %d devices (p50 of 100)", devices)
	fail := func(err error) []row { return []row{errRow(qMetric, "(none)", err), errRow(cMetric, "(none)", err)} }
	d, _, err := b.start(ctx)
	if err != nil {
		return fail(err)
	}
	defer b.stop(d)
	owner, err := b.register(ctx, d, "keyowner")
	if err != nil {
		return fail(err)
	}
	asker, err := b.register(ctx, d, "keyasker")
	if err != nil {
		return fail(err)
	}
	ids := make([]string, devices)
	// At most 4 at once: password logins from one address are limited to
	// bursts of 5 attempts in flight (localapi/matrix/ratelimit.go).
	err = parallel(devices, 4, func(i int) error {
		var login struct {
			AccessToken string `json:"access_token"`
			DeviceID    string `json:"device_id"`
		}
		body := map[string]any{"type": "m.login.password", "password": "bench-password-keyowner",
			"identifier": map[string]any{"type": "m.id.user", "user": "keyowner"}}
		if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/login", "", body, &login, reqTimeout); err != nil {
			return err
		}
		dev := login.DeviceID
		ids[i] = dev
		sig := map[string]any{owner.id: map[string]any{"ed25519:" + dev: "sig"}}
		one := map[string]any{}
		for k := range otks {
			one[fmt.Sprintf("signed_curve25519:%s%03d", dev, k)] = map[string]any{"key": fmt.Sprintf("otk%s%d", dev, k), "signatures": sig}
		}
		up := map[string]any{
			"device_keys": map[string]any{"user_id": owner.id, "device_id": dev,
				"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
				"keys":       map[string]any{"curve25519:" + dev: "c" + dev, "ed25519:" + dev: "e" + dev}, "signatures": sig},
			"one_time_keys": one,
		}
		return call(ctx, b.hc, d, "POST", "/_matrix/client/v3/keys/upload", login.AccessToken, up, nil, reqTimeout)
	})
	if err != nil {
		return fail(err)
	}
	var qs, cs []time.Duration
	for range 200 {
		var out struct {
			DeviceKeys map[string]map[string]any `json:"device_keys"`
		}
		t := time.Now()
		body := map[string]any{"device_keys": map[string]any{owner.id: []string{}}}
		if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/keys/query", asker.token, body, &out, reqTimeout); err != nil {
			return fail(err)
		}
		qs = append(qs, time.Since(t))
		if n := len(out.DeviceKeys[owner.id]); n != devices {
			return fail(fmt.Errorf("keys/query returned %d devices, want %d", n, devices))
		}
	}
	want := map[string]any{}
	for _, dev := range ids {
		want[dev] = "signed_curve25519"
	}
	for range otks {
		var out struct {
			OneTimeKeys map[string]map[string]any `json:"one_time_keys"`
		}
		t := time.Now()
		body := map[string]any{"one_time_keys": map[string]any{owner.id: want}}
		if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/keys/claim", asker.token, body, &out, reqTimeout); err != nil {
			return fail(err)
		}
		cs = append(cs, time.Since(t))
		if n := len(out.OneTimeKeys[owner.id]); n != devices {
			return fail(fmt.Errorf("keys/claim returned keys of %d devices, want %d", n, devices))
		}
	}
	return []row{
		{metric: qMetric, value: fmt.Sprintf("%s (p95 %s)", ms(pct(qs, 50)), msNum(pct(qs, 95))), target: "(none)",
			nums: figs(fig("p50", msF(pct(qs, 50)), "ms"), fig("p95", msF(pct(qs, 95)), "ms"))},
		{metric: cMetric, value: fmt.Sprintf("%s (p95 %s)", ms(pct(cs, 50)), msNum(pct(cs, 95))), target: "(none)",
			nums: figs(fig("p50", msF(pct(cs, 50)), "ms"), fig("p95", msF(pct(cs, 95)), "ms"))},
	}
}
