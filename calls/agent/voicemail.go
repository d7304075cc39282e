package agent

import (
	"context"
	"time"

	"github.com/pion/webrtc/v4"
)

// Voicemail is what voicemail needs besides the agent: to be filled in.
type Voicemail struct{}

func (v *Voicemail) newRecording(max time.Duration) callMedia { return &recording{max: max} }

type recording struct{ max time.Duration }

func (r *recording) limit() time.Duration { return r.max }
func (r *recording) prepare(context.Context, *call, *webrtc.PeerConnection, string) error {
	return nil
}
func (r *recording) finished(context.Context, *call) {}
