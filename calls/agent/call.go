package agent

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/internal/room"
)

// Why a call ended without the agent hanging up: the other side ended it,
// or another device of the owner took it.
var (
	errCallerEnded       = errors.New("caller ended the call")
	errAnsweredElsewhere = errors.New("another device answered")
	errStopping          = errors.New("agent stopping")
)

type role int

const (
	roleEcho role = iota
	roleVoicemail
)

// callMedia is what one kind of call does with its peer connection:
// prepare adds tracks and handlers before the answer; done is called once
// the connection is closed, with whether media ever connected.
type callMedia interface {
	prepare(ctx context.Context, c *call, pc *webrtc.PeerConnection, offer string) error
	// limit is the longest the call may last once connected.
	limit() time.Duration
	// finished runs after the peer connection is closed.
	finished(ctx context.Context, c *call)
}

// call is one call the agent answers (or rings for, for voicemail).
type call struct {
	a           *Agent
	key         string
	roomID      string
	callID      string
	caller      string // the caller's user ID
	callerParty string
	callerName  string // the caller's display name in the room
	me          Party
	role        role
	offer       string
	invitedAt   time.Time
	lifetime    time.Duration
	media       callMedia
	ctx         context.Context
	cancel      context.CancelCauseFunc
	in          chan *callContent // candidates and negotiations from the caller
	answered    atomic.Bool
	connectedAt atomic.Int64 // unix ms; 0 until media connected
	pending     []candidate  // the caller's candidates from before the answer
	stateOnce   sync.Once
	connected   chan struct{}
	failed      chan struct{}
	failOnce    sync.Once
}

func callKey(roomID, callID string) string { return roomID + "\x00" + callID }

// invite decides whether the agent takes part in a new call: echo answers
// any call in a room it is in; voicemail rings for a 1:1 call to the
// owner. An expired invite, one meant for someone else, or one over the
// bounds is ignored.
func (a *Agent) invite(pe *room.PushEvent, c *callContent) {
	ev := &pe.Event
	if c.Offer == nil || c.Offer.Type != "offer" || c.Offer.SDP == "" {
		return
	}
	lifetime := time.Duration(c.Lifetime) * time.Millisecond
	sent := time.UnixMilli(ev.OriginServerTS)
	if lifetime > 0 && time.Since(sent) > lifetime {
		return // the spec: an invite older than its lifetime is not answered
	}
	joined := func(user string) bool {
		return user != "" && slices.ContainsFunc(pe.Local, func(m room.PushMember) bool { return m.UserID == user })
	}
	cl := &call{a: a, roomID: pe.RoomID, callID: c.CallID, caller: ev.Sender, callerParty: c.PartyID,
		callerName: pe.SenderName, offer: c.Offer.SDP, invitedAt: sent, lifetime: lifetime,
		in: make(chan *callContent, 64), connected: make(chan struct{}), failed: make(chan struct{})}
	switch {
	case joined(a.cfg.Echo.UserID) && (c.Invitee == "" || c.Invitee == a.cfg.Echo.UserID):
		cl.role, cl.me, cl.media = roleEcho, a.cfg.Echo, &echoMedia{max: a.cfg.EchoMax}
	case a.vm != nil && a.vm.Audio != nil && pe.Members == 2 && joined(a.cfg.Owner.UserID) && ev.Sender != a.cfg.Owner.UserID &&
		(c.Invitee == "" || c.Invitee == a.cfg.Owner.UserID):
		cl.role, cl.me, cl.media = roleVoicemail, a.cfg.Owner, a.vm.newRecording(a.cfg.VoicemailMax)
	default:
		return
	}
	if cl.callerName == "" {
		cl.callerName = ev.Sender
	}
	cl.key = callKey(cl.roomID, cl.callID)
	if !a.admit(cl) {
		a.log.Info("calls: invite over the bounds, ignored", "room", cl.roomID, "caller", cl.caller)
		return
	}
	cl.ctx, cl.cancel = context.WithCancelCause(a.ctx)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer a.release(cl)
		cl.run()
	}()
}

// admit registers a call within the bounds: calls overall, per room and
// per caller. A call ID seen before is not a new call.
func (a *Agent) admit(c *call) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx.Err() != nil || a.calls[c.key] != nil || len(a.calls) >= a.cfg.MaxCalls ||
		a.perRoom[c.roomID] >= a.cfg.MaxPerRoom || a.perCaller[c.caller] >= a.cfg.MaxPerCaller {
		return false
	}
	a.calls[c.key] = c
	a.perRoom[c.roomID]++
	a.perCaller[c.caller]++
	return true
}

func (a *Agent) release(c *call) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.calls, c.key)
	if a.perRoom[c.roomID]--; a.perRoom[c.roomID] <= 0 {
		delete(a.perRoom, c.roomID)
	}
	if a.perCaller[c.caller]--; a.perCaller[c.caller] <= 0 {
		delete(a.perCaller, c.caller)
	}
}

// deliver routes a call event other than an invite to the call it is
// about, if the agent is in it.
func (a *Agent) deliver(roomID, typ, sender string, c *callContent) {
	a.mu.Lock()
	cl := a.calls[callKey(roomID, c.CallID)]
	a.mu.Unlock()
	if cl == nil {
		return
	}
	fromCaller := sender == cl.caller && (cl.callerParty == "" || c.PartyID == "" || c.PartyID == cl.callerParty)
	switch typ {
	case evHangup, evReject:
		if fromCaller {
			cl.cancel(errCallerEnded)
		} else if cl.role == roleVoicemail && sender == cl.me.UserID && !cl.answered.Load() {
			cl.cancel(errAnsweredElsewhere) // the owner declined on another device
		}
	case evAnswer:
		// Another device of the owner answered: voicemail stops ringing.
		if cl.role == roleVoicemail && sender == cl.me.UserID && c.PartyID != cl.me.DeviceID {
			cl.cancel(errAnsweredElsewhere)
		}
	case evSelectAnswer:
		// The caller chose an answer; if it is not ours, we are not in
		// the call (Client-Server API §"Voice over IP": select_answer).
		if fromCaller && c.SelectedPartyID != "" && c.SelectedPartyID != cl.me.DeviceID {
			cl.cancel(errAnsweredElsewhere)
		}
	case evCandidates, evNegotiate:
		if fromCaller {
			select {
			case cl.in <- c:
			default: // a flood: the call's queue is full, drop
			}
		}
	}
}

// run is the whole life of one call, on its own goroutine.
func (c *call) run() {
	log := c.a.log.With("room", c.roomID, "call_id", c.callID, "as", c.me.UserID)
	if c.role == roleVoicemail {
		if !c.ring() {
			return
		}
		if ensure := c.a.vm.EnsureDevice; ensure != nil {
			if err := ensure(c.ctx); err != nil {
				log.Warn("calls: voicemail device", "err", err)
				return
			}
		}
	}
	pc, err := c.answer()
	if pc != nil {
		defer func() {
			c.cancel(errStopping) // what runs for the call ends with it
			pc.GracefulClose()
			c.media.finished(context.WithoutCancel(c.ctx), c)
		}()
	}
	if err != nil {
		log.Info("calls: cannot answer", "err", err)
		if context.Cause(c.ctx) == nil || context.Cause(c.ctx) == context.Canceled {
			c.hangup(reasonICEFailed)
		}
		return
	}
	log.Debug("calls: answered")
	reason := c.converse(pc)
	if reason != "" {
		c.hangup(reason)
	}
	log.Debug("calls: ended", "reason", reason, "cause", context.Cause(c.ctx))
}

// ring waits, for voicemail, until the owner's devices had their chance:
// voicemail_after, capped by the invite's lifetime. It keeps the caller's
// candidates for the answer. It returns false when the call ended or was
// taken meanwhile.
func (c *call) ring() bool {
	wait := c.a.cfg.VoicemailAfter
	if c.lifetime > 0 {
		// Answer before the invite expires on the caller's side.
		left := c.lifetime - time.Since(c.invitedAt) - time.Second
		if left <= 0 {
			return false
		}
		wait = min(wait, left)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-c.ctx.Done():
			return false
		case in := <-c.in:
			c.pending = append(c.pending, in.Candidates...)
		}
	}
}

// answer sets up the peer connection from the offer and sends
// m.call.answer with the candidates gathered within a moment (the rest
// follow in m.call.candidates).
func (c *call) answer() (*webrtc.PeerConnection, error) {
	cfg := webrtc.Configuration{}
	if c.a.cfg.ICEServers != nil {
		cfg.ICEServers = c.a.cfg.ICEServers(c.me.UserID)
	}
	pc, err := c.a.api.NewPeerConnection(cfg)
	if err != nil {
		return nil, err
	}
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			c.stateOnce.Do(func() {
				c.connectedAt.Store(time.Now().UnixMilli())
				close(c.connected)
			})
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			c.failOnce.Do(func() { close(c.failed) })
		}
	})
	pc.OnICECandidate(func(ic *webrtc.ICECandidate) {
		if ic == nil || !c.answered.Load() {
			return // gathered before the answer: in its SDP
		}
		init := ic.ToJSON()
		c.send(evCandidates, map[string]any{"candidates": []candidate{{Candidate: init.Candidate,
			SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}}})
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: c.offer}); err != nil {
		return pc, err
	}
	if err := c.media.prepare(c.ctx, c, pc, c.offer); err != nil {
		return pc, err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return pc, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return pc, err
	}
	t := time.NewTimer(time.Second)
	select {
	case <-gathered:
	case <-t.C:
	case <-c.ctx.Done():
		t.Stop()
		return pc, context.Cause(c.ctx)
	}
	t.Stop()
	c.answered.Store(true)
	if err := c.send(evAnswer, map[string]any{"answer": description{Type: "answer", SDP: pc.LocalDescription().SDP}}); err != nil {
		return pc, err
	}
	for _, cand := range c.pending {
		c.addCandidate(pc, cand)
	}
	c.pending = nil
	return pc, nil
}

// addCandidate gives the peer connection one of the caller's candidates.
// One it refuses is skipped: the others may still connect, and if none
// does, the connect timeout hangs up.
func (c *call) addCandidate(pc *webrtc.PeerConnection, cand candidate) {
	if cand.Candidate == "" {
		return // end of candidates
	}
	if err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: cand.Candidate, SDPMid: cand.SDPMid,
		SDPMLineIndex: cand.SDPMLineIndex}); err != nil {
		c.a.log.Debug("calls: candidate refused", "call_id", c.callID, "err", err)
	}
}

// converse runs an answered call until it ends; it returns the hang-up
// reason to send, "" when the agent should send none.
func (c *call) converse(pc *webrtc.PeerConnection) string {
	connect := time.NewTimer(c.a.cfg.ConnectTimeout)
	defer connect.Stop()
	var limit <-chan time.Time
	connected := c.connected
	for {
		select {
		case <-c.ctx.Done():
			if context.Cause(c.ctx) == errCallerEnded || context.Cause(c.ctx) == errAnsweredElsewhere {
				return ""
			}
			return reasonUserHangup // the daemon is stopping
		case <-connected:
			connected = nil // fire once
			connect.Stop()
			t := time.NewTimer(c.media.limit())
			defer t.Stop()
			limit = t.C
		case <-connect.C:
			return reasonICETimeout
		case <-c.failed:
			return reasonICEFailed
		case <-limit:
			return reasonUserHangup
		case in := <-c.in:
			for _, cand := range in.Candidates {
				c.addCandidate(pc, cand)
			}
			if in.Description != nil && in.Description.Type == "offer" {
				if err := c.renegotiate(pc, in); err != nil {
					c.a.log.Info("calls: renegotiation failed", "call_id", c.callID, "err", err)
					return reasonICEFailed
				}
			}
		}
	}
}

// renegotiate answers an m.call.negotiate offer with an m.call.negotiate
// answer (Client-Server API §"Voice over IP": renegotiation).
func (c *call) renegotiate(pc *webrtc.PeerConnection, in *callContent) error {
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: in.Description.SDP}); err != nil {
		return err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		return err
	}
	lifetime := in.Lifetime
	if lifetime <= 0 {
		lifetime = 30000
	}
	return c.send(evNegotiate, map[string]any{"lifetime": lifetime,
		"description": description{Type: "answer", SDP: pc.LocalDescription().SDP}})
}

// hangup sends m.call.hangup; it is sent even while the agent stops, so
// the caller's client does not wait for a party that is gone.
func (c *call) hangup(reason string) {
	c.send(evHangup, map[string]any{"reason": reason})
}

// send posts one call event as the agent's party.
func (c *call) send(typ string, fields map[string]any) error {
	fields["call_id"] = c.callID
	fields["party_id"] = c.me.DeviceID
	fields["version"] = "1"
	content, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 10*time.Second)
	defer cancel()
	txn := "hearth-call-" + rand.Text()
	_, err = c.a.sendAs(ctx, c.me, c.roomID, typ, content, txn)
	if err != nil {
		c.a.log.Warn("calls: send", "type", typ, "room", c.roomID, "err", err)
	}
	return err
}
