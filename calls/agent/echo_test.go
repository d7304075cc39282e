package agent

import (
	"runtime"
	"testing"
	"time"
)

// TestEchoAnswersAndEchoes: echo, in a room with the caller, answers an
// invite as its own device and sends the caller's audio back; after the
// caller hangs up nothing of the call is left.
func TestEchoAnswersAndEchoes(t *testing.T) {
	e := newEnv(t, Config{})
	alice := user("alice")
	roomID := e.room(alice, echo.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine() // the agent's follower included
	c := newCaller(e, alice, roomID)
	c.invite(nil)
	ans := c.awaitAnswer(10 * time.Second)
	if ans.PartyID != echo.DeviceID {
		t.Fatalf("answer party_id %q, want echo's device %q", ans.PartyID, echo.DeviceID)
	}
	c.sendAndExpectEcho(10 * time.Second)
	c.hangup()
	c.pc.GracefulClose()
	settle(t, e.agent, base)
}
