package push

import (
	"encoding/json"
	"log/slog"
)

// Desktop shows a notification on this computer's desktop. On Linux that
// is org.freedesktop.Notifications over the session bus; the daemon uses
// gen2brain/beeep, which also speaks to macOS and Windows.
type Desktop interface {
	Notify(title, body string) error
}

// DesktopOptions say whose notifications reach the desktop, and when not.
type DesktopOptions struct {
	// Owner reports whether a user is the person at this computer (the
	// desktop is theirs; household accounts are not).
	Owner func(userID string) bool
	// Active reports whether one of the user's clients is in use right
	// now: it shows its own notification, so the desktop stays quiet.
	Active func(userID string) bool
	// Mode is "on", "highlights" (mentions and keywords only) or "off"
	// (do not disturb).
	Mode func() string
}

// SetDesktop turns on desktop notifications for what the push rules mark
// notify (or, in highlights mode, highlight).
func (s *Service) SetDesktop(d Desktop, opts DesktopOptions) {
	s.deskMu.Lock()
	defer s.deskMu.Unlock()
	s.desktop, s.deskOpts = d, opts
}

// toDesktop hands the stored results of a batch to the desktop, off the
// evaluator's goroutine: a slow notification daemon must not delay counts.
func (s *Service) toDesktop(batch []evaluated) {
	d, notes := s.desktopNotes(batch)
	if len(notes) == 0 {
		return
	}
	go func() {
		for _, n := range notes {
			if err := d.Notify(n.title, n.body); err != nil {
				slog.Debug("push: desktop notification", "err", err)
			}
		}
	}()
}

// ownerOncePerBatch asks owner at most once per user over one batch: the
// daemon answers from the accounts store (a read and a JSON decode), and
// each message in a room of 32 members has 31 results to ask about.
func ownerOncePerBatch(owner func(string) bool) func(string) bool {
	if owner == nil {
		return nil
	}
	known := map[string]bool{}
	return func(userID string) bool {
		is, ok := known[userID]
		if !ok {
			is = owner(userID)
			known[userID] = is
		}
		return is
	}
}

// note is one desktop notification.
type note struct{ title, body string }

// desktopNotes is what a batch shows on the desktop, and where. It first
// follows the calls ringing for the owner (ringing.go), which the tray
// shows even in do-not-disturb: a menu line makes no sound.
func (s *Service) desktopNotes(batch []evaluated) (Desktop, []note) {
	s.deskMu.Lock()
	d, opts := s.desktop, s.deskOpts
	s.deskMu.Unlock()
	now := s.clock()
	owner := ownerOncePerBatch(opts.Owner)
	s.ringing.track(batch, owner, now)
	if d == nil {
		return nil, nil
	}
	mode := opts.Mode()
	if mode == "off" {
		return nil, nil
	}
	var notes []note
	for _, e := range batch {
		for _, r := range e.results {
			if !r.Notify || (mode == "highlights" && !r.Highlight) || !owner(r.UserID) || opts.Active(r.UserID) {
				continue
			}
			if e.pe.Event.Type == "m.call.invite" {
				// Only a call that rings: not an invite whose lifetime
				// passed before we saw it (backfill, a late federation
				// delivery), nor one for another invitee, nor one already
				// answered, hung up or rejected in this batch.
				if c, _ := parseCall(e.pe.Event.Content); !s.ringing.has(e.pe.RoomID, c.CallID, now) {
					continue
				}
				notes = append(notes, note{callTitle(e.pe.SenderName, e.pe.Event.Sender), callBody})
				continue
			}
			notes = append(notes, note{desktopTitle(e.pe.SenderName, e.pe.Event.Sender, e.pe.RoomName), desktopBody(e.pe.Event.Type, e.pe.Event.Content)})
		}
	}
	return d, notes
}

func desktopTitle(senderName, sender, roomName string) string {
	who := senderName
	if who == "" {
		who = sender
	}
	if roomName == "" {
		return who
	}
	return who + " in " + roomName
}

// callTitle is an incoming call's notification title ("Anna is calling"):
// the caller's display name in the room, else their user ID.
func callTitle(senderName, sender string) string {
	if senderName == "" {
		senderName = sender
	}
	return senderName + " is calling"
}

// callBody says where to answer: the desktop notification cannot answer
// a call itself, the owner's Matrix client does.
const callBody = "Open your chat app to answer"

// desktopBody is what a notification says: the message text, or what kind
// of thing arrived when there is no text to show.
func desktopBody(typ string, content json.RawMessage) string {
	switch typ {
	case "m.room.encrypted":
		return "Encrypted message"
	case "m.room.member":
		return "Invitation"
	}
	var c struct {
		Body string `json:"body"`
	}
	json.Unmarshal(content, &c)
	if len(c.Body) > 200 {
		c.Body = c.Body[:200] + "…"
	}
	return c.Body
}
