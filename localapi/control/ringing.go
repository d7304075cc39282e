package control

// RingingCall is a call ringing for the owner (issue 12): an m.call.invite
// in one of their rooms not yet answered, hung up or rejected, whose
// lifetime has not passed. The tray shows "Anna is calling" for it. Calls
// in encrypted rooms are not seen by the server and never listed here:
// the owner's Matrix client rings for those.
type RingingCall struct {
	// Caller is the inviter's user ID; DisplayName their display name in
	// the room, absent when they have none.
	Caller      string `json:"caller"`
	DisplayName string `json:"display_name,omitempty"`
	RoomID      string `json:"room_id"`
	CallID      string `json:"call_id"`
}

// CallerName is how the tray names the caller: the display name, else the
// user ID.
func (c RingingCall) CallerName() string {
	if c.DisplayName != "" {
		return c.DisplayName
	}
	return c.Caller
}
