package stateres

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

const (
	alice   = "@alice:a.test" // sender of the create event
	bob     = "@bob:b.test"
	charlie = "@charlie:c.test"
	dave    = "@dave:d.test"
	carol   = "@carol:a.test" // an additional creator where a test says so
)

// room builds real, signed events of one room version with a throwaway key.
type room struct {
	t      testing.TB
	ver    gomatrixserverlib.IRoomVersion
	key    ed25519.PrivateKey
	create gomatrixserverlib.PDU
	ts     int64 // origin_server_ts of the next event, in ms
	depth  int64
	all    []gomatrixserverlib.PDU
}

// newRoom is a room version 12 room.
func newRoom(t testing.TB, additionalCreators ...string) *room {
	t.Helper()
	return newRoomOf(t, gomatrixserverlib.RoomVersionV12, additionalCreators...)
}

// newRoomOf is a room of the given version created by alice. Before v11 the
// create event names its creator in content (the sender all the same).
func newRoomOf(t testing.TB, version gomatrixserverlib.RoomVersion, additionalCreators ...string) *room {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r := &room{t: t, ver: gomatrixserverlib.MustGetRoomVersion(version), key: key, ts: 1_000_000}
	content := map[string]any{"room_version": string(version)}
	if len(additionalCreators) > 0 {
		content["additional_creators"] = additionalCreators
	}
	if r.ver.CreatorInCreateEvent() {
		content["creator"] = alice
	}
	r.create = r.build(alice, spec.MRoomCreate, "", content, nil, true)
	return r
}

func mustJSON(t testing.TB, v any) spec.RawJSON {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// state builds a state event of sender, citing auth and the create event
// (which v12 implies and must not list; earlier versions list it). The event must pass the
// authorization rules against its auth events: that catches mistakes in the
// test rooms themselves.
func (r *room) state(sender, typ, key string, content any, auth ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	r.t.Helper()
	return r.build(sender, typ, key, content, auth, true)
}

func (r *room) build(sender, typ, key string, content any, auth []gomatrixserverlib.PDU, check bool) gomatrixserverlib.PDU {
	r.t.Helper()
	ids := []string{}
	for _, a := range auth {
		ids = append(ids, a.EventID())
	}
	prev := ids
	if len(ids) == 0 && r.create != nil {
		prev = []string{r.create.EventID()} // the creator's join follows the create event
	}
	if r.create != nil && !r.ver.DomainlessRoomIDs() {
		ids = append([]string{r.create.EventID()}, ids...)
	}
	proto := gomatrixserverlib.ProtoEvent{SenderID: sender, Type: typ, StateKey: &key,
		PrevEvents: prev, AuthEvents: ids, Depth: r.depth + 1, Content: mustJSON(r.t, content)}
	switch {
	case r.create != nil:
		proto.RoomID = r.create.RoomID().String()
	case !r.ver.DomainlessRoomIDs():
		proto.RoomID = "!room:a.test"
	}
	r.depth++
	eb := r.ver.NewEventBuilderFromProtoEvent(&proto)
	ev, err := eb.Build(time.UnixMilli(r.ts), "a.test", "ed25519:1", r.key)
	if err != nil {
		r.t.Fatalf("build %s: %v", typ, err)
	}
	r.ts += 1000
	ev.EventID()
	if check {
		provider, err := gomatrixserverlib.NewAuthEvents(nil)
		if err != nil {
			r.t.Fatal(err)
		}
		if r.create != nil {
			_ = provider.AddEvent(r.create)
		}
		for _, a := range auth {
			_ = provider.AddEvent(a)
		}
		if err := gomatrixserverlib.Allowed(ev, provider, userIDForSender); err != nil {
			r.t.Fatalf("test event %s by %s not allowed by its auth events: %v", typ, sender, err)
		}
	}
	r.all = append(r.all, ev)
	return ev
}

// at sets the origin_server_ts of the next event.
func (r *room) at(ms int64) *room { r.ts = ms; return r }

func (r *room) member(sender, target, membership string, auth ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	r.t.Helper()
	return r.state(sender, spec.MRoomMember, target, map[string]any{"membership": membership}, auth...)
}

// base is the usual start of a test room: alice (the creator) joined, power
// levels giving users (and, before v12, alice 100), public join rules, and
// users joined.
type base struct {
	joinA, pl, jr gomatrixserverlib.PDU
	joins         map[string]gomatrixserverlib.PDU
}

func (r *room) base(users map[string]int64, joiners ...string) base {
	r.t.Helper()
	b := base{joins: map[string]gomatrixserverlib.PDU{}}
	if !r.ver.PrivilegedCreators() { // alice keeps her creator's 100 explicitly
		users = maps.Clone(users)
		users[alice] = max(users[alice], 100)
	}
	b.joinA = r.member(alice, alice, "join")
	b.pl = r.state(alice, spec.MRoomPowerLevels, "", map[string]any{"users": users}, b.joinA)
	b.jr = r.state(alice, spec.MRoomJoinRules, "", map[string]any{"join_rule": "public"}, b.joinA, b.pl)
	b.joins[alice] = b.joinA
	for _, u := range joiners {
		b.joins[u] = r.member(u, u, "join", b.pl, b.jr)
	}
	return b
}

// stateOf lists the state events common to every test state set.
func (b base) stateOf(r *room, extra ...gomatrixserverlib.PDU) []gomatrixserverlib.PDU {
	out := []gomatrixserverlib.PDU{r.create, b.pl, b.jr}
	for _, u := range slices.Sorted(maps.Keys(b.joins)) {
		out = append(out, b.joins[u])
	}
	return withOverrides(out, extra...)
}

// withOverrides replaces events of the same (type, state_key) or appends.
func withOverrides(set []gomatrixserverlib.PDU, extra ...gomatrixserverlib.PDU) []gomatrixserverlib.PDU {
	out := slices.Clone(set)
	for _, e := range extra {
		i := slices.IndexFunc(out, func(p gomatrixserverlib.PDU) bool { return keyOf(p) == keyOf(e) })
		if i >= 0 {
			out[i] = e
		} else {
			out = append(out, e)
		}
	}
	return out
}

// resolveAll resolves sets with every event built so far as auth events, the
// shape internal/room hands over (the union of the auth chains plus the
// state events).
func (r *room) resolveAll(rl rules, sets ...[]gomatrixserverlib.PDU) map[stateKey]string {
	r.t.Helper()
	out, err := resolve(r.ver.Version(), rl, sets, r.all, nil, nil)
	if err != nil {
		r.t.Fatal(err)
	}
	m := map[stateKey]string{}
	for _, p := range out {
		if _, dup := m[keyOf(p)]; dup {
			r.t.Fatalf("two events for %v in the result", keyOf(p))
		}
		m[keyOf(p)] = p.EventID()
	}
	return m
}

func plKey() stateKey             { return stateKey{spec.MRoomPowerLevels, ""} }
func memberKey(u string) stateKey { return stateKey{spec.MRoomMember, u} }

// unchecked builds an event the authorization rules refuse, as a faulty or
// malicious server might have accepted it.
func (r *room) unchecked(sender, typ, key string, content any, auth ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	r.t.Helper()
	return r.build(sender, typ, key, content, auth, false)
}
