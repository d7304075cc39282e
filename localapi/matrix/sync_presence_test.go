package matrix_test

import "testing"

// presenceSenders lists the senders of a sync's m.presence events.
func presenceSenders(resp map[string]any) map[string]bool {
	out := map[string]bool{}
	p, _ := resp["presence"].(map[string]any)
	evs, _ := p["events"].([]any)
	for _, e := range evs {
		if ev, _ := e.(map[string]any); ev["type"] == "m.presence" {
			out[ev["sender"].(string)] = true
		}
	}
	return out
}

// When bob joins alice's room, each gets the other's presence in their
// next incremental sync, though neither's presence changed since their
// tokens (sytest "Newly joined room includes presence in incremental
// sync", "Get presence for newly joined members in incremental sync"),
// and not again after that.
func TestSyncPresenceOfNewlySharedRoom(t *testing.T) {
	ts := newTestServer(t)
	alice, bob := ts.register(t, "alice"), ts.register(t, "bob")
	rid := ts.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	aliceTok := covSync(t, ts, alice, "")["next_batch"].(string)
	bobTok := covSync(t, ts, bob, "")["next_batch"].(string)
	// Both are online now, and their tokens are past that.
	aliceTok = covSync(t, ts, alice, aliceTok)["next_batch"].(string)
	bobTok = covSync(t, ts, bob, bobTok)["next_batch"].(string)

	covJoin(t, ts, bob, rid)
	resp := covSync(t, ts, alice, aliceTok)
	if !presenceSenders(resp)[bob.ID] {
		t.Errorf("alice's sync after bob joined lacks his presence: %v", resp["presence"])
	}
	if again := covSync(t, ts, alice, resp["next_batch"].(string)); presenceSenders(again)[bob.ID] {
		t.Errorf("alice's next sync repeats bob's presence")
	}
	resp = covSync(t, ts, bob, bobTok)
	if !presenceSenders(resp)[alice.ID] {
		t.Errorf("bob's sync after joining lacks alice's presence: %v", resp["presence"])
	}
}
