package tray

import (
	"fmt"

	"github.com/hearth-chat/hearth/localapi/control"
)

// voicemailTitle is the voicemail line: the newest voicemail's caller
// ("Voicemail from Anna"), how many more there are, or none.
func voicemailTitle(vms []control.Voicemail) string {
	if len(vms) == 0 {
		return "No voicemail"
	}
	name := vms[0].CallerName
	if name == "" {
		name = vms[0].Caller
	}
	title := "Voicemail from " + name
	if len(vms) > 1 {
		title += fmt.Sprintf(" (+%d more)", len(vms)-1)
	}
	return title
}

// showVoicemail updates the voicemail line; a click on it opens the chat
// client, where the voice message is in the caller's room.
func (t *Tray) showVoicemail(st *control.Status) {
	t.voicemail.SetTitle(voicemailTitle(st.Voicemail))
	if len(st.Voicemail) > 0 {
		t.voicemail.Enable()
	} else {
		t.voicemail.Disable()
	}
}
