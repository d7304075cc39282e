package matrix_test

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearth-chat/hearth/push"
)

const pushV3 = "/_matrix/client/v3"

// pushServer is the test server with the push service wired and running,
// as daemon.Start wires it; gateways on 127.0.0.1 are allowed.
type pushServer struct {
	*testServer
	Push *push.Service
}

func newPushServer(t testing.TB) *pushServer {
	t.Helper()
	ts := newTestServer(t)
	p := push.New(ts.DB, ts.Rooms, push.Options{AllowPrivateGateways: true, RetryBase: 5 * time.Millisecond})
	p.Start()
	ts.API.SetPush(p)
	t.Cleanup(p.Stop) // runs before the store closes (cleanups are LIFO)
	return &pushServer{ts, p}
}

// settle waits until the evaluator has handled everything written so far.
func (ps *pushServer) settle(t *testing.T) {
	t.Helper()
	pos, _ := ps.Rooms.Pos()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ps.Push.WaitEvaluated(ctx, pos); err != nil {
		t.Fatalf("push evaluator did not reach %d: %v", pos, err)
	}
}

func ruleIDs(t *testing.T, ps *pushServer, u *testUser, kind string) []string {
	t.Helper()
	r := ps.do(t, "GET", pushV3+"/pushrules/global/"+kind+"/", u.Token, nil)
	r.wantStatus(t, 200)
	var rules []struct {
		RuleID string `json:"rule_id"`
	}
	if err := json.Unmarshal(r.Body, &rules); err != nil {
		t.Fatalf("rules of %s: %v: %s", kind, err, r.Body)
	}
	var out []string
	for _, x := range rules {
		out = append(out, x.RuleID)
	}
	return out
}

// TestPushRulesCRUD covers PUT with before/after, GET, enabled and
// actions on user and default rules, DELETE, and the m.push_rules account
// data in /sync, with every response checked against the spec.
func TestPushRulesCRUD(t *testing.T) {
	ps := newPushServer(t)
	c := specChecker{ps.testServer, loadSpec(t)}
	alice := ps.register(t, "alice")
	base := pushV3 + "/pushrules/global/"
	first := covSync(t, ps.testServer, alice, "")
	if !strings.Contains(string(mustJSON(t, first["account_data"])), `"m.push_rules"`) {
		t.Fatalf("initial sync has no m.push_rules account data: %v", first["account_data"])
	}

	cake := map[string]any{"pattern": "cake*lie", "actions": []any{"notify"}}
	c.call(t, "PUT", base+"content/a", alice.Token, cake).wantStatus(t, 200)
	c.call(t, "PUT", base+"content/b", alice.Token, cake).wantStatus(t, 200)               // newest first
	c.call(t, "PUT", base+"content/c?after=b", alice.Token, cake).wantStatus(t, 200)       // b, c, a
	c.call(t, "PUT", base+"content/d?before=a", alice.Token, cake).wantStatus(t, 200)      // b, c, d, a
	c.call(t, "PUT", base+"content/e?before=nosuch", alice.Token, cake).wantStatus(t, 400) // unknown anchor
	want := []string{"b", "c", "d", "a", ".m.rule.contains_user_name"}
	if got := ruleIDs(t, ps, alice, "content"); !slices.Equal(got, want) {
		t.Fatalf("content rules %v, want %v", got, want)
	}

	over := map[string]any{"conditions": []any{map[string]any{"kind": "event_match", "key": "content.body", "pattern": "x"}},
		"actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}}
	c.call(t, "PUT", base+"override/mine", alice.Token, over).wantStatus(t, 200)
	if got := ruleIDs(t, ps, alice, "override"); len(got) < 3 || got[0] != ".m.rule.master" || got[1] != "mine" {
		t.Fatalf("override order %v: want master, then user rules, then defaults", got)
	}
	r := c.call(t, "GET", base+"override/mine", alice.Token, nil)
	r.wantStatus(t, 200)
	if m := r.json(t); m["enabled"] != true || m["default"] != false {
		t.Fatalf("new rule: %s", r.Body)
	}

	// enabled and actions, on a user rule and on a server-default rule.
	c.call(t, "PUT", base+"override/mine/enabled", alice.Token, map[string]any{"enabled": false}).wantStatus(t, 200)
	if m := c.call(t, "GET", base+"override/mine/enabled", alice.Token, nil).json(t); m["enabled"] != false {
		t.Fatalf("enabled after disabling: %v", m)
	}
	c.call(t, "PUT", base+"underride/.m.rule.message/enabled", alice.Token, map[string]any{"enabled": false}).wantStatus(t, 200)
	c.call(t, "PUT", base+"underride/.m.rule.message/actions", alice.Token,
		map[string]any{"actions": []any{"notify", map[string]any{"set_tweak": "sound", "value": "bing"}}}).wantStatus(t, 200)
	m := c.call(t, "GET", base+"underride/.m.rule.message", alice.Token, nil).json(t)
	if m["enabled"] != false || len(m["actions"].([]any)) != 2 || m["default"] != true {
		t.Fatalf("default rule after changes: %v", m)
	}
	// A server-default rule cannot be deleted; a user rule can.
	c.call(t, "DELETE", base+"underride/.m.rule.message", alice.Token, nil).wantError(t, 400, "M_INVALID_PARAM")
	c.call(t, "DELETE", base+"content/c", alice.Token, nil).wantStatus(t, 200)
	c.call(t, "DELETE", base+"content/c", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	c.call(t, "GET", base+"content/c", alice.Token, nil).wantError(t, 404, "M_NOT_FOUND")
	c.call(t, "GET", pushV3+"/pushrules/", alice.Token, nil).wantStatus(t, 200)

	// The change reached /sync as m.push_rules account data.
	next := covSync(t, ps.testServer, alice, first["next_batch"].(string))
	found := false
	for _, e := range next["account_data"].(map[string]any)["events"].([]any) {
		ev := e.(map[string]any)
		if ev["type"] == "m.push_rules" {
			g := ev["content"].(map[string]any)["global"].(map[string]any)
			found = len(g["content"].([]any)) == 4
		}
	}
	if !found {
		t.Fatalf("m.push_rules missing or stale in sync account_data: %v", next["account_data"])
	}
}

// TestPushRulesBadInput: each invalid rule gets the spec's error and the
// stored rules stay as they were.
func TestPushRulesBadInput(t *testing.T) {
	ps := newPushServer(t)
	alice := ps.register(t, "alice")
	base := pushV3 + "/pushrules/global/"
	ps.do(t, "PUT", base+"override/keep", alice.Token, map[string]any{"conditions": []any{}, "actions": []any{"notify"}}).wantStatus(t, 200)
	before := ps.do(t, "GET", pushV3+"/pushrules/", alice.Token, nil).Body

	for _, tc := range []struct {
		path, body, code string
	}{
		{"override/.mine", `{"actions":["notify"]}`, "M_INVALID_PARAM"},
		{"bogus/x", `{"actions":["notify"]}`, "M_INVALID_PARAM"},
		{"override/x", `{"actions":"notify"}`, "M_BAD_JSON"},
		{"override/x", `{"actions":["shout"]}`, "M_BAD_JSON"},
		{"override/x", `{"actions":[{"set_tweak":"sound","value":3}]}`, "M_BAD_JSON"},
		{"override/x", `{"conditions":[{"kind":"nonsense"}],"actions":[]}`, "M_BAD_JSON"},
		{"override/x", `{"conditions":[{"kind":"event_match","key":"type"}],"actions":[]}`, "M_BAD_JSON"},
		{"override/x", `{"conditions":[{"kind":"room_member_count","is":"lots"}],"actions":[]}`, "M_BAD_JSON"},
		{"override/x", `{"conditions":{},"actions":[]}`, "M_BAD_JSON"},
		{"override/x", `{"conditions":[]}`, "M_MISSING_PARAM"},
		{"content/x", `{"actions":["notify"]}`, "M_BAD_JSON"},
		{"room/notaroom", `{"actions":["notify"]}`, "M_INVALID_PARAM"},
		{"sender/nobody", `{"actions":["notify"]}`, "M_INVALID_PARAM"},
		{"override/x", `[1,2]`, "M_BAD_JSON"},
		{"override/x", `{"actions":[`, "M_NOT_JSON"},
		{"override/keep/enabled", `{"enabled":"yes"}`, "M_BAD_JSON"},
		{"override/keep/actions", `{"actions":[{"set_tweak":"highlight","value":"very"}]}`, "M_BAD_JSON"},
		{"override/keep?before=nosuch", `{"actions":[]}`, "M_NOT_FOUND"},
	} {
		r := ps.do(t, "PUT", base+tc.path, alice.Token, tc.body)
		if r.Status != 400 {
			t.Errorf("PUT %s %s: status %d, want 400: %s", tc.path, tc.body, r.Status, r.Body)
			continue
		}
		r.wantError(t, 400, tc.code)
	}
	ps.do(t, "PUT", base+"override/nosuch/enabled", alice.Token, `{"enabled":true}`).wantError(t, 404, "M_NOT_FOUND")
	if after := ps.do(t, "GET", pushV3+"/pushrules/", alice.Token, nil).Body; string(after) != string(before) {
		t.Fatalf("bad input changed the rules:\n%s\n%s", before, after)
	}
}

// unread returns the room's unread_notifications from a sync response.
func unread(t *testing.T, resp map[string]any, roomID string) (notif, highlight int, present bool) {
	t.Helper()
	jr, ok := resp["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)
	if !ok {
		return 0, 0, false
	}
	u := jr["unread_notifications"].(map[string]any)
	return int(u["notification_count"].(float64)), int(u["highlight_count"].(float64)), true
}

func sendContent(t *testing.T, ps *pushServer, u *testUser, roomID, txn string, content map[string]any) string {
	t.Helper()
	return covSend(t, ps.testServer, u, roomID, "m.room.message", txn, content)
}

// TestPushEvaluation drives the real server: a mention highlights, a DM
// notifies with a sound, a notice does not, a disabled rule is skipped,
// the sender is never notified, and a read receipt sets the counts in
// /sync back to zero; /notifications lists what notified.
func TestPushEvaluation(t *testing.T) {
	ps := newPushServer(t)
	c := specChecker{ps.testServer, loadSpec(t)}
	alice, bob, carol := ps.register(t, "alice"), ps.register(t, "bob"), ps.register(t, "carol")
	group := ps.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ps.testServer, bob, group)
	covJoin(t, ps.testServer, carol, group)
	dm := ps.createRoom(t, alice, map[string]any{"preset": "trusted_private_chat", "invite": []string{bob.ID}, "is_direct": true})
	covJoin(t, ps.testServer, bob, dm)
	ps.settle(t)
	since := covSync(t, ps.testServer, alice, "")["next_batch"].(string)

	sendContent(t, ps, bob, group, "m1", map[string]any{"msgtype": "m.text", "body": "hello all"})
	sendContent(t, ps, bob, group, "m2", map[string]any{"msgtype": "m.notice", "body": "bot says"})
	mention := sendContent(t, ps, bob, group, "m3", map[string]any{"msgtype": "m.text", "body": "Alice, look",
		"m.mentions": map[string]any{"user_ids": []string{alice.ID}}})
	sendContent(t, ps, alice, group, "m4", map[string]any{"msgtype": "m.text", "body": "my own message"})
	dmMsg := ps.send(t, bob, dm, "d1", "psst")
	ps.settle(t)

	resp := covSync(t, ps.testServer, alice, since)
	if n, h, _ := unread(t, resp, group); n != 2 || h != 1 {
		t.Fatalf("group counts %d/%d, want 2 notifications (message, mention), 1 highlight", n, h)
	}
	if n, h, _ := unread(t, resp, dm); n != 1 || h != 0 {
		t.Fatalf("dm counts %d/%d, want 1/0", n, h)
	}
	if n, _, _ := unread(t, covSync(t, ps.testServer, bob, ""), group); n != 1 {
		t.Fatalf("bob's group count %d, want 1 (alice's message; his own do not count)", n)
	}

	// /notifications: newest first, the DM's with a sound tweak; only=highlight.
	r := c.call(t, "GET", pushV3+"/notifications?limit=2", alice.Token, nil)
	r.wantStatus(t, 200)
	var page struct {
		Notifications []struct {
			Actions []any `json:"actions"`
			Event   struct {
				EventID string `json:"event_id"`
			} `json:"event"`
			Read   bool   `json:"read"`
			RoomID string `json:"room_id"`
		} `json:"notifications"`
		NextToken string `json:"next_token"`
	}
	page.Notifications, page.NextToken = nil, ""
	json.Unmarshal(r.Body, &page)
	if len(page.Notifications) != 2 || page.Notifications[0].Event.EventID != dmMsg || page.NextToken == "" ||
		len(page.Notifications[0].Actions) != 2 || page.Notifications[1].Event.EventID != mention {
		t.Fatalf("notifications page: %s", r.Body)
	}
	r = c.call(t, "GET", pushV3+"/notifications?from="+url.QueryEscape(page.NextToken), alice.Token, nil)
	page.Notifications, page.NextToken = nil, ""
	json.Unmarshal(r.Body, &page)
	if len(page.Notifications) != 1 || page.NextToken != "" {
		t.Fatalf("second page: %s", r.Body)
	}
	r = c.call(t, "GET", pushV3+"/notifications?only=highlight", alice.Token, nil)
	page.Notifications, page.NextToken = nil, ""
	json.Unmarshal(r.Body, &page)
	if len(page.Notifications) != 1 || page.Notifications[0].Event.EventID != mention || page.Notifications[0].Read {
		t.Fatalf("highlights: %s", r.Body)
	}
	c.call(t, "GET", pushV3+"/notifications?limit=x", alice.Token, nil).wantError(t, 400, "M_INVALID_PARAM")

	// A read receipt on the mention clears the group's counts.
	since = resp["next_batch"].(string)
	ps.do(t, "POST", covRoomPath(group)+"/receipt/m.read/"+url.PathEscape(mention), alice.Token, map[string]any{}).wantStatus(t, 200)
	resp = covSync(t, ps.testServer, alice, since)
	if n, h, ok := unread(t, resp, group); !ok || n != 0 || h != 0 {
		t.Fatalf("after the receipt: %d/%d (room present %v), want 0/0", n, h, ok)
	}
	r = c.call(t, "GET", pushV3+"/notifications?only=highlight", alice.Token, nil)
	page.Notifications, page.NextToken = nil, ""
	json.Unmarshal(r.Body, &page)
	if !page.Notifications[0].Read {
		t.Fatalf("the mention is not marked read: %s", r.Body)
	}

	// Disabling .m.rule.message silences plain group messages.
	ps.do(t, "PUT", pushV3+"/pushrules/global/underride/.m.rule.message/enabled", alice.Token,
		map[string]any{"enabled": false}).wantStatus(t, 200)
	since = resp["next_batch"].(string)
	sendContent(t, ps, bob, group, "m5", map[string]any{"msgtype": "m.text", "body": "anyone?"})
	ps.settle(t)
	if n, _, _ := unread(t, covSync(t, ps.testServer, alice, since), group); n != 0 {
		t.Fatalf("disabled .m.rule.message still notified (%d)", n)
	}
}

// TestUnreadCountsWakeSync: a new notification reaches a long-polling
// /sync even when the filter hides the event itself: the room joins the
// response with its count.
func TestUnreadCountsWakeSync(t *testing.T) {
	ps := newPushServer(t)
	alice, bob := ps.register(t, "alice"), ps.register(t, "bob")
	roomID := ps.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ps.testServer, bob, roomID)
	ps.settle(t)
	filter := url.QueryEscape(`{"room":{"timeline":{"not_types":["m.room.message"]}}}`)
	since := covSync(t, ps.testServer, alice, "")["next_batch"].(string)
	ps.send(t, bob, roomID, "t1", "hello")
	for range 3 {
		r := ps.do(t, "GET", pushV3+"/sync?timeout=10000&filter="+filter+"&since="+url.QueryEscape(since), alice.Token, nil)
		r.wantStatus(t, 200)
		resp := r.json(t)
		if n, _, _ := unread(t, resp, roomID); n == 1 {
			return
		}
		since = resp["next_batch"].(string)
	}
	t.Fatal("the notification count never reached /sync")
}

// TestUnreadCountsOfHiddenEventAmongRooms: with the notification already
// stored (the span reaches back past what push has logged), a room whose
// new event the filter hides still comes with its count, and the user's
// quiet rooms stay out.
func TestUnreadCountsOfHiddenEventAmongRooms(t *testing.T) {
	ps := newPushServer(t)
	alice, bob := ps.register(t, "alice"), ps.register(t, "bob")
	var rooms []string
	for range 3 {
		roomID := ps.createRoom(t, alice, map[string]any{"preset": "public_chat"})
		covJoin(t, ps.testServer, bob, roomID)
		rooms = append(rooms, roomID)
	}
	ps.settle(t)
	since := covSync(t, ps.testServer, alice, "")["next_batch"].(string)
	ps.send(t, bob, rooms[1], "t1", "hello")
	ps.settle(t)
	filter := url.QueryEscape(`{"room":{"timeline":{"not_types":["m.room.message"]}}}`)
	r := ps.do(t, "GET", pushV3+"/sync?timeout=0&filter="+filter+"&since="+url.QueryEscape(since), alice.Token, nil)
	r.wantStatus(t, 200)
	resp := r.json(t)
	if n, _, present := unread(t, resp, rooms[1]); !present || n != 1 {
		t.Fatalf("the room of the hidden message: present %v, count %d; want its count of 1", present, n)
	}
	for _, quiet := range []string{rooms[0], rooms[2]} {
		if _, _, present := unread(t, resp, quiet); present {
			t.Errorf("quiet room %s is in the response", quiet)
		}
	}
}

// TestUnreadThreadCounts: with unread_thread_notifications in the filter,
// thread notifications are counted under their root and a threaded
// receipt clears only its thread.
func TestUnreadThreadCounts(t *testing.T) {
	ps := newPushServer(t)
	alice, bob := ps.register(t, "alice"), ps.register(t, "bob")
	roomID := ps.createRoom(t, alice, map[string]any{"preset": "public_chat"})
	covJoin(t, ps.testServer, bob, roomID)
	covJoin(t, ps.testServer, ps.register(t, "carol"), roomID)
	root := ps.send(t, bob, roomID, "r", "root")
	reply := sendContent(t, ps, bob, roomID, "t", map[string]any{"msgtype": "m.text", "body": "in thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	ps.settle(t)
	filter := url.QueryEscape(`{"room":{"timeline":{"unread_thread_notifications":true}}}`)
	sync := func() map[string]any {
		r := ps.do(t, "GET", pushV3+"/sync?timeout=0&filter="+filter, alice.Token, nil)
		r.wantStatus(t, 200)
		return r.json(t)
	}
	jr := sync()["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)
	if n := jr["unread_notifications"].(map[string]any)["notification_count"]; n != float64(1) {
		t.Fatalf("main count %v, want 1", n)
	}
	th, _ := jr["unread_thread_notifications"].(map[string]any)[root].(map[string]any)
	if th == nil || th["notification_count"] != float64(1) {
		t.Fatalf("thread counts %v", jr["unread_thread_notifications"])
	}
	ps.do(t, "POST", covRoomPath(roomID)+"/receipt/m.read/"+url.PathEscape(reply), alice.Token,
		map[string]any{"thread_id": root}).wantStatus(t, 200)
	jr = sync()["rooms"].(map[string]any)["join"].(map[string]any)[roomID].(map[string]any)
	threads, _ := jr["unread_thread_notifications"].(map[string]any)
	if _, still := threads[root]; still {
		t.Fatalf("thread still unread after its receipt: %v", jr["unread_thread_notifications"])
	}
	if n := jr["unread_notifications"].(map[string]any)["notification_count"]; n != float64(1) {
		t.Fatalf("a threaded receipt cleared the main timeline: %v", n)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
