package matrix_test

import (
	"testing"

	"github.com/hearth-chat/hearth/localapi/matrix"
)

// nearbyList is the package boundary the daemon implements over LAN
// discovery (matrix.Nearby); the real path runs in
// internal/e2e/nearby_people_test.go.
type nearbyList []matrix.NearbyPerson

func (n nearbyList) NearbyPeople() []matrix.NearbyPerson { return n }

// TestUserDirectoryNearby: people announced by LAN peers are found by
// display name and by localpart, as @localpart:peer with the announced
// display name, within the same limit as everyone else.
func TestUserDirectoryNearby(t *testing.T) {
	ts := newTestServer(t)
	alice := ts.register(t, "alice")
	ts.API.SetNearby(nearbyList{
		{UserID: "@bob:bob-laptop-abcdef.local", DisplayName: "Bob Builder"},
		{UserID: "@anna:anna-laptop-ghijkl.local", DisplayName: "Anna"},
		{UserID: "@bobby:other-qwerty.local", DisplayName: "Robert"},
	})
	search := func(term string, limit int) (map[string]string, bool) {
		t.Helper()
		body := map[string]any{"search_term": term}
		if limit > 0 {
			body["limit"] = limit
		}
		r := ts.do(t, "POST", covV3+"/user_directory/search", alice.Token, body)
		r.wantStatus(t, 200)
		m := r.json(t)
		out := map[string]string{}
		for _, e := range m["results"].([]any) {
			res := e.(map[string]any)
			name, _ := res["display_name"].(string)
			out[res["user_id"].(string)] = name
		}
		limited, _ := m["limited"].(bool)
		return out, limited
	}
	got, _ := search("Builder", 0)
	if len(got) != 1 || got["@bob:bob-laptop-abcdef.local"] != "Bob Builder" {
		t.Errorf("search Builder (display name): %v", got)
	}
	got, _ = search("anna", 0)
	if len(got) != 1 || got["@anna:anna-laptop-ghijkl.local"] != "Anna" {
		t.Errorf("search anna: %v", got)
	}
	got, _ = search("bobby", 0) // localpart only: his display name is Robert
	if len(got) != 1 || got["@bobby:other-qwerty.local"] != "Robert" {
		t.Errorf("search bobby (localpart): %v", got)
	}
	got, limited := search("bob", 1)
	if len(got) != 1 || !limited {
		t.Errorf("search bob limit 1: %v limited=%v, want one result and limited", got, limited)
	}
	got, _ = search("alice", 0)
	if _, ok := got[alice.ID]; len(got) != 1 || !ok {
		t.Errorf("search alice: %v, want only the local account", got)
	}
}
