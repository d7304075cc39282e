package agent

import (
	"encoding/json"
	"fmt"
)

// The content of the m.call.* events the agent reads and sends
// (Client-Server API §"Voice over IP", version "1"). Only the fields the
// agent acts on are decoded; unknown fields are ignored as the spec asks.

// description is an RTCSessionDescription: an offer or an answer.
type description struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// candidate is one RTCIceCandidate as m.call.candidates carries it; an
// empty Candidate marks the end of candidates.
type candidate struct {
	Candidate     string  `json:"candidate"`
	SDPMid        *string `json:"sdpMid,omitempty"`
	SDPMLineIndex *uint16 `json:"sdpMLineIndex,omitempty"`
}

// callContent is the union of the fields of every m.call.* event.
type callContent struct {
	CallID          string       `json:"call_id"`
	PartyID         string       `json:"party_id"`
	Version         any          `json:"version"` // "1", or the integer 0 of VoIP v0
	Lifetime        int64        `json:"lifetime"`
	Invitee         string       `json:"invitee"`
	Offer           *description `json:"offer"`       // m.call.invite
	Answer          *description `json:"answer"`      // m.call.answer
	Description     *description `json:"description"` // m.call.negotiate
	Candidates      []candidate  `json:"candidates"`
	SelectedPartyID string       `json:"selected_party_id"`
	Reason          string       `json:"reason"`
}

// parseCall decodes the content of an m.call.* event; an event without a
// call_id belongs to no call and is refused.
func parseCall(raw json.RawMessage) (*callContent, error) {
	var c callContent
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("call event content: %w", err)
	}
	if c.CallID == "" {
		return nil, fmt.Errorf("call event without call_id")
	}
	return &c, nil
}

// Hang-up reasons the spec lists for m.call.hangup.
const (
	reasonICEFailed  = "ice_failed"
	reasonICETimeout = "ice_timeout"
	reasonUserHangup = "user_hangup"
)

// Event types.
const (
	evInvite       = "m.call.invite"
	evCandidates   = "m.call.candidates"
	evAnswer       = "m.call.answer"
	evSelectAnswer = "m.call.select_answer"
	evNegotiate    = "m.call.negotiate"
	evReject       = "m.call.reject"
	evHangup       = "m.call.hangup"
)
