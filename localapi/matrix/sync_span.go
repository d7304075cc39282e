package matrix

import (
	"encoding/json"

	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/e2ee"
	"github.com/hearth-chat/hearth/internal/room"
)

// spanKinds is which change-log kinds an incremental /sync's span holds
// (room.Engine.SpanChangeKinds, read once for all the long polls woken by
// one commit); the zero value, for an initial sync, holds every kind. The
// sections below read the log only when the span holds their kind: in the
// common case (a message in a room) each skips a read transaction.
func (s *Server) spanKinds(since, now uint64) (room.ChangeKinds, error) {
	if since == 0 || now <= since {
		return room.ChangeKinds{}, nil
	}
	return s.rooms.SpanChangeKinds(since, now)
}

// accountDataSince is accounts.AccountDataSince, skipped when the span
// holds no account data change (it reads nothing else of an incremental
// span).
func (s *Server) accountDataSince(c *caller, since, now uint64, kinds room.ChangeKinds) ([]json.RawMessage, map[string][]json.RawMessage, error) {
	if since != 0 && !kinds.Has(account.ChangeAccountData) {
		return []json.RawMessage{}, map[string][]json.RawMessage{}, nil
	}
	return s.accounts.AccountDataSince(c.Localpart, since, now)
}

// presenceSince is presence.since, skipped when every entry of the span is
// of a kind known not to be presence: local presence and other servers'
// (a kind this package does not name) are both entries of the log.
func (s *Server) presenceSince(c *caller, since, now uint64, kinds room.ChangeKinds) ([]json.RawMessage, error) {
	if since != 0 && kinds.Only(account.ChangeAccountData, e2ee.ChangeDeviceList, room.ChangeReceipt, room.ChangeState) {
		return []json.RawMessage{}, nil
	}
	return s.presence.since(c, since, now)
}

// changedDeviceUsers is keys.ChangedUsers, skipped when the span holds no
// device-list change.
func (s *Server) changedDeviceUsers(since, now uint64) ([]string, error) {
	kinds, err := s.spanKinds(since, now)
	if err != nil {
		return nil, err
	}
	if since != 0 && !kinds.Has(e2ee.ChangeDeviceList) {
		return nil, nil
	}
	return s.keys.ChangedUsers(since, now)
}
