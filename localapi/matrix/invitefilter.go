package matrix

import (
	"github.com/hearth-chat/hearth/internal/account"
	"github.com/hearth-chat/hearth/internal/matrixerr"
)

// Invite filtering (MSC4155; spec v1.18 §"Invite permission"): a local
// invitee's invite permission config decides whether an invite is made
// (allow, ignore) or refused (block). An invitee on another server is its
// server's to judge; its refusal comes back through federation.

// checkInvite refuses with 403 M_INVITE_BLOCKED an invite of a local user
// whose config blocks invites from inviter, before anything is stored.
// Ignored invites pass: the inviter must not learn of the filter.
func (s *Server) checkInvite(invitee, inviter string) error {
	if serverOf(invitee) != s.accounts.ServerName() {
		return nil
	}
	rules, err := s.accounts.InviteRules(s.accounts.Localpart(invitee))
	if err != nil {
		return err
	}
	if rules.Action(inviter) == account.InviteBlock {
		return matrixerr.InviteBlocked(invitee + " does not accept invites from " + inviter)
	}
	return nil
}
