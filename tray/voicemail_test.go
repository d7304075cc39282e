package tray

import (
	"testing"

	"github.com/hearth-chat/hearth/localapi/control"
)

// TestVoicemailTitle: the line names the newest caller and counts the rest.
func TestVoicemailTitle(t *testing.T) {
	for _, c := range []struct {
		vms  []control.Voicemail
		want string
	}{
		{nil, "No voicemail"},
		{[]control.Voicemail{{CallerName: "Anna", Caller: "@anna:x"}}, "Voicemail from Anna"},
		{[]control.Voicemail{{Caller: "@bob:x"}, {CallerName: "Anna"}}, "Voicemail from @bob:x (+1 more)"},
	} {
		if got := voicemailTitle(c.vms); got != c.want {
			t.Errorf("%v: %q, want %q", c.vms, got, c.want)
		}
	}
}
