package matrix

import (
	"encoding/json"
	"testing"
)

// TestJoinExtraKeepsOnlyClientFields: the custom content of a join body
// goes into the member event, but never the fields the server decides.
// join_authorised_via_users_server in particular is the resident server's
// to set (Server-Server API §"Restricted rooms"): a remote join's
// make_join template only overrides it when it names an authoriser, so a
// client's value would otherwise reach another server's room.
func TestJoinExtraKeepsOnlyClientFields(t *testing.T) {
	body := map[string]json.RawMessage{
		"membership":                       json.RawMessage(`"ban"`),
		"reason":                           json.RawMessage(`"hi"`),
		"third_party_signed":               json.RawMessage(`{}`),
		"join_authorised_via_users_server": json.RawMessage(`"@admin:elsewhere"`),
		"io.example.custom":                json.RawMessage(`1`),
	}
	got := joinExtra(body)
	if len(got) != 1 || string(got["io.example.custom"]) != "1" {
		t.Errorf("joinExtra kept %v, want only io.example.custom", got)
	}
}
