package push

import (
	"encoding/json"
	"runtime"
	"slices"
	"strings"
	"sync"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/pushrules"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/room"
	"github.com/hearth-chat/hearth/internal/store"
)

// evalRoom is the pushrules.Room (and PowerLevelfulRoom) mautrix's
// evaluator asks about: the member count for room_member_count, the
// recipient's display name for contains_display_name, and power levels for
// sender_notification_permission. Only the sender's level matters there,
// so the power levels carry just that.
type evalRoom struct {
	displayName string
	members     int
	pl          *event.PowerLevelsEventContent
}

func (r *evalRoom) GetOwnDisplayname() string                      { return r.displayName }
func (r *evalRoom) GetMemberCount() int                            { return r.members }
func (r *evalRoom) GetPowerLevels() *event.PowerLevelsEventContent { return r.pl }

var _ pushrules.PowerLevelfulRoom = (*evalRoom)(nil)

// Result is the outcome of the rules for one recipient of one event.
type Result struct {
	UserID    string
	Actions   pushrules.PushActionArray
	Notify    bool
	Highlight bool
}

// Evaluator runs each recipient's rules over events.
type Evaluator struct {
	rules      *Rules
	serverName string

	// parsed keeps recent events in mautrix's form: every long poll woken
	// by an event evaluates it for its own user (Service.Live).
	mu     sync.Mutex
	parsed map[string]*event.Event
}

const maxParsed = 256

// parse converts an event for mautrix's evaluator, nil if it cannot.
func (ev *Evaluator) parse(ce *room.ClientEvent) *event.Event {
	ev.mu.Lock()
	mev := ev.parsed[ce.EventID]
	ev.mu.Unlock()
	if mev != nil {
		return mev
	}
	raw, err := json.Marshal(ce)
	if err != nil {
		return nil
	}
	mev = &event.Event{}
	if err := json.Unmarshal(raw, mev); err != nil {
		return nil
	}
	ev.mu.Lock()
	if len(ev.parsed) >= maxParsed || ev.parsed == nil {
		ev.parsed = map[string]*event.Event{}
	}
	ev.parsed[ce.EventID] = mev
	ev.mu.Unlock()
	return mev
}

// NewEvaluator returns an evaluator reading rules from r.
func NewEvaluator(r *Rules, serverName string) *Evaluator {
	return &Evaluator{rules: r, serverName: serverName}
}

// inviteFiltered reports whether the local invitee's invite permission
// config ignores (or blocks) invites from inviter: MSC4155 says such an
// invite must not count for push notifications.
func (ev *Evaluator) inviteFiltered(invitee, inviter string) bool {
	lp := strings.TrimSuffix(strings.TrimPrefix(invitee, "@"), ":"+ev.serverName)
	var rules account.InviteRules
	ev.rules.db.View(func(tx *store.Tx) error {
		rules = account.InviteRulesIn(tx, lp)
		return nil
	})
	return rules.Action(inviter) != account.InviteAllow
}

// parallelRecipients is the number of recipients from which Evaluate
// shares an event's recipients among the cores.
const parallelRecipients = 256

// Evaluate returns the notifying results for every local recipient of pe:
// each joined local member but the sender, plus a local user the event
// invites (for .m.rule.invite_for_me), sorted by user ID (resultFor).
// Client-Server API §"Push Rules".
func (ev *Evaluator) Evaluate(pe *room.PushEvent) ([]Result, error) {
	if nobodyToNotify(pe) { // evaluate_alone.go
		return nil, nil
	}
	mev := ev.parse(&pe.Event)
	if mev == nil {
		// Content mautrix cannot read cannot match content conditions
		// either; it notifies nobody.
		return nil, nil
	}
	level, notif := int(pe.SenderLevel), int(pe.RoomNotifLevel)
	pl := &event.PowerLevelsEventContent{Users: map[id.UserID]int{mev.Sender: level},
		Notifications: &event.NotificationPowerLevels{RoomPtr: &notif}}
	recipients := pe.Local
	if pe.Event.Type == "m.room.member" && pe.Event.StateKey != nil {
		invitee := *pe.Event.StateKey
		if mev.Content.Raw["membership"] == "invite" && strings.HasSuffix(invitee, ":"+ev.serverName) &&
			invitee != pe.Event.Sender && !ev.inviteFiltered(invitee, pe.Event.Sender) {
			recipients = append(recipients[:len(recipients):len(recipients)], room.PushMember{UserID: invitee})
		}
	}
	// Recipients are independent; in a big room share them among the
	// cores, since /sync waits for these results before it counts. Not
	// below parallelRecipients: a member costs a few µs, and waiting for
	// the helpers to be scheduled cost the follower more than it saved
	// (docs/performance.md, "Delivery: the critical path").
	parts := 1
	if len(recipients) >= parallelRecipients {
		parts = min(runtime.GOMAXPROCS(0), 8)
	}
	results := make([][]Result, parts)
	errs := make([]error, parts)
	var wg sync.WaitGroup
	part := func(p int) {
		er := &evalRoom{members: pe.Members, pl: pl}
		match := newMatcher(er, mev)
		for i := p; i < len(recipients); i += parts {
			m := recipients[i]
			rs, err := ev.rules.Ruleset(m.UserID)
			if err != nil {
				errs[p] = err
				return
			}
			er.displayName = m.DisplayName
			actions := match.actions(rs)
			if should := actions.Should(); should.Notify {
				results[p] = append(results[p], Result{UserID: m.UserID, Actions: actions, Notify: true, Highlight: should.Highlight})
			}
		}
	}
	for p := 1; p < parts; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part(p)
		}()
	}
	part(0) // this goroutine's share: it runs now, whatever the scheduler does
	wg.Wait()
	var out []Result
	for p := range parts {
		if errs[p] != nil {
			return nil, errs[p]
		}
		out = append(out, results[p]...)
	}
	slices.SortFunc(out, func(a, b Result) int { return strings.Compare(a.UserID, b.UserID) })
	return out, nil
}

// resultFor returns userID's result among results sorted by user ID
// (Evaluate's): every /sync response looks up its user's in each event
// published since the last store, and scanning every recipient's result
// of each was the most of push's share of a response in a room of 50
// (docs/performance.md, "Delivery: long polls first").
func resultFor(results []Result, userID string) (Result, bool) {
	i, ok := slices.BinarySearchFunc(results, userID, func(r Result, id string) int { return strings.Compare(r.UserID, id) })
	if !ok {
		return Result{}, false
	}
	return results[i], true
}
