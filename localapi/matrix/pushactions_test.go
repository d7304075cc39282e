package matrix_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// tweaksIn returns every set_tweak object anywhere in a JSON document.
func tweaksIn(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("not JSON: %v: %.300s", err, body)
	}
	var out []map[string]any
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["set_tweak"]; ok {
				out = append(out, v)
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return out
}

// wantSpecTweaks checks that every set_tweak in body is in the spec's form
// (Client-Server API §"Actions"): a value only when it has one, so a
// highlight is {"set_tweak": "highlight"}, never with "value": null (which
// clients read as "do not highlight").
func wantSpecTweaks(t *testing.T, where string, body []byte) {
	t.Helper()
	tweaks := tweaksIn(t, body)
	highlights := 0
	for _, tw := range tweaks {
		if v, ok := tw["value"]; ok && v == nil {
			t.Errorf("%s: %v has a null value", where, tw)
		}
		if tw["set_tweak"] == "highlight" && len(tw) == 1 {
			highlights++
		}
	}
	if highlights == 0 {
		t.Errorf("%s: no {\"set_tweak\":\"highlight\"} in %.500s", where, body)
	}
}

// TestPushActionsSpecForm: push rules as /pushrules, the m.push_rules
// account data and /notifications write them carry highlight tweaks as
// {"set_tweak":"highlight"}, and /pushrules matches the spec's schema.
func TestPushActionsSpecForm(t *testing.T) {
	ps := newPushServer(t)
	c := specChecker{ps.testServer, loadSpec(t)}
	alice, bob := ps.register(t, "alice"), ps.register(t, "bob")

	r := c.call(t, "GET", pushV3+"/pushrules/", alice.Token, nil)
	r.wantStatus(t, 200)
	wantSpecTweaks(t, "GET /pushrules/", r.Body)
	r = c.call(t, "GET", pushV3+"/pushrules/global/", alice.Token, nil)
	wantSpecTweaks(t, "GET /pushrules/global/", r.Body)
	r = ps.do(t, "GET", pushV3+"/pushrules/global/override/", alice.Token, nil) // not in the spec's paths
	wantSpecTweaks(t, "GET /pushrules/global/override/", r.Body)
	r = c.call(t, "GET", pushV3+"/pushrules/global/override/.m.rule.is_user_mention", alice.Token, nil)
	r.wantStatus(t, 200)
	wantSpecTweaks(t, "GET .m.rule.is_user_mention", r.Body)
	r = c.call(t, "GET", pushV3+"/pushrules/global/override/.m.rule.is_user_mention/actions", alice.Token, nil)
	r.wantStatus(t, 200)
	wantSpecTweaks(t, "GET .m.rule.is_user_mention/actions", r.Body)

	// The account data: first the defaults an initial sync adds, then what
	// a change of a rule stores.
	initial := ps.do(t, "GET", pushV3+"/sync", alice.Token, nil)
	initial.wantStatus(t, 200)
	wantSpecTweaks(t, "initial sync", initial.Body)
	ps.do(t, "PUT", pushV3+"/pushrules/global/content/cake", alice.Token, map[string]any{
		"pattern": "cake", "actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}}).wantStatus(t, 200)
	next := initial.str(t, "next_batch")
	r = ps.do(t, "GET", pushV3+"/sync?timeout=0&since="+url.QueryEscape(next), alice.Token, nil)
	r.wantStatus(t, 200)
	if !strings.Contains(string(r.Body), `"m.push_rules"`) {
		t.Fatalf("no m.push_rules account data after a rule change: %.300s", r.Body)
	}
	wantSpecTweaks(t, "m.push_rules after a change", r.Body)

	// /notifications of a mention.
	room := ps.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ps.testServer, bob, room)
	sendContent(t, ps, bob, room, "mention", map[string]any{"msgtype": "m.text", "body": "alice!",
		"m.mentions": map[string]any{"user_ids": []string{alice.ID}}})
	ps.settle(t)
	r = c.call(t, "GET", pushV3+"/notifications?only=highlight", alice.Token, nil)
	r.wantStatus(t, 200)
	wantSpecTweaks(t, "GET /notifications", r.Body)
}
