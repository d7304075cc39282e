package stateres

import (
	"fmt"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// BenchmarkResolve1000Members resolves two forks of a room of 1,000 joined
// members that disagree on a handful of keys: the name, the topic, the power
// levels, one ban and one leave.
func BenchmarkResolve1000Members(b *testing.B) {
	r := newRoom(b)
	users := make([]string, 1000)
	for i := range users {
		users[i] = fmt.Sprintf("@u%d:b.test", i)
	}
	base := r.base(map[string]int64{users[0]: 100, users[1]: 50}, users...)
	u0, u1 := base.joins[users[0]], base.joins[users[1]]
	pl := r.state(users[0], spec.MRoomPowerLevels, "", map[string]any{"users": map[string]int64{users[0]: 100, users[1]: 0}}, u0, base.pl)
	ban := r.member(users[0], users[5], "ban", u0, base.pl, base.joins[users[5]])
	name0 := r.state(users[0], "m.room.name", "", map[string]any{"name": "zero"}, u0, base.pl)
	name1 := r.state(users[1], "m.room.name", "", map[string]any{"name": "one"}, u1, base.pl)
	topic := r.state(users[1], "m.room.topic", "", map[string]any{"topic": "t"}, u1, base.pl)
	leave := r.member(users[7], users[7], "leave", base.joins[users[7]], base.pl)
	sets := [][]gomatrixserverlib.PDU{
		base.stateOf(r, pl, ban, name0),
		base.stateOf(r, name1, topic, leave),
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		out, err := Resolve(gomatrixserverlib.RoomVersionV12, sets, r.all, nil)
		if err != nil {
			b.Fatal(err)
		}
		if len(out) < 1000 {
			b.Fatalf("%d events resolved", len(out))
		}
	}
}
