package agent

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// Audio is what voicemail needs of calls/media: the greeting played to
// the caller and the caller's Opus recorded into Ogg/Opus.
type Audio interface {
	// PlayGreeting writes the greeting to track in real time; it
	// returns when the greeting ends or ctx does.
	PlayGreeting(ctx context.Context, track *webrtc.TrackLocalStaticSample) error
	// Record records src until it ends, ctx ends or max of media is
	// recorded. A caller who sent no audio gives an error.
	Record(ctx context.Context, src *webrtc.TrackRemote, max time.Duration) (*Recorded, error)
}

// Recorded is one voicemail recording.
type Recorded struct {
	File     []byte // Ogg/Opus
	Duration time.Duration
	Waveform []int // for org.matrix.msc1767.audio: values 0–1024
}

// Voicemail is what voicemail needs besides the agent: audio, where the
// recording is stored and who is told of it.
type Voicemail struct {
	Audio Audio
	// Store uploads a recording to the media store as the owner's and
	// returns its mxc:// URI; encrypted says file is an encrypted
	// attachment (stored as application/octet-stream).
	Store func(ctx context.Context, owner string, file []byte, name string, encrypted bool) (string, error)
	// Notify shows a desktop notification (nil: none); the daemon's
	// keeps quiet under do-not-disturb.
	Notify func(title, body string)
	// EnsureDevice, if set, makes sure the voicemail device is among the
	// owner's devices before it answers: logging out the other devices
	// (a password change) deletes it.
	EnsureDevice func(ctx context.Context) error

	mu   sync.Mutex
	list []Message
}

// Message is one voicemail left, as the control API's status lists it.
type Message struct {
	Caller     string    `json:"caller"`      // user ID
	CallerName string    `json:"caller_name"` // display name in the room
	RoomID     string    `json:"room_id"`
	EventID    string    `json:"event_id"`
	When       time.Time `json:"when"`
	DurationMs int64     `json:"duration_ms"`
}

// maxMessages is how many voicemails the status keeps (newest first);
// the recordings themselves stay in their rooms.
const maxMessages = 20

// Messages lists the voicemails left since the daemon started, newest
// first.
func (v *Voicemail) Messages() []Message {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.list)
}

func (v *Voicemail) add(m Message) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.list = append([]Message{m}, v.list...)
	if len(v.list) > maxMessages {
		v.list = v.list[:maxMessages]
	}
}

func (v *Voicemail) newRecording(max time.Duration) callMedia {
	return &recording{vm: v, max: max}
}

// recording is voicemail's side of a call: the greeting goes out while
// the caller's audio is recorded, from the moment media connects (a
// caller who speaks over the greeting is not cut), up to max.
type recording struct {
	vm      *Voicemail
	max     time.Duration
	wg      sync.WaitGroup
	started atomic.Bool
	done    chan struct{} // closed when the recorder returned
	result  *Recorded
	err     error
}

// limit lets the recorder, which counts media time, reach max first.
func (r *recording) limit() time.Duration { return r.max + 2*time.Second }

func (r *recording) prepare(ctx context.Context, c *call, pc *webrtc.PeerConnection, offer string) error {
	offered, err := sendingMedia(offer)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(offered, func(m offeredMedia) bool { return m.kind == webrtc.RTPCodecTypeAudio }) {
		return fmt.Errorf("the offer sends no audio")
	}
	greeting, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
		ClockRate: 48000, Channels: 2}, "audio", "hearth-voicemail")
	if err != nil {
		return err
	}
	sender, err := pc.AddTrack(greeting)
	if err != nil {
		return err
	}
	r.done = make(chan struct{})
	r.wg.Add(2)
	go func() { // RTCP must be read for the interceptors; ends with the connection
		defer r.wg.Done()
		for {
			if _, _, err := sender.ReadRTCP(); err != nil {
				return
			}
		}
	}()
	go func() { // the greeting starts once media flows
		defer r.wg.Done()
		select {
		case <-c.connected:
			if err := r.vm.Audio.PlayGreeting(ctx, greeting); err != nil && ctx.Err() == nil {
				c.a.log.Warn("calls: voicemail greeting", "err", err)
			}
		case <-c.failed:
		case <-ctx.Done():
		}
	}()
	pc.OnTrack(func(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if remote.Kind() != webrtc.RTPCodecTypeAudio || !r.started.CompareAndSwap(false, true) {
			return
		}
		defer close(r.done)
		r.result, r.err = r.vm.Audio.Record(ctx, remote, r.max)
	})
	return nil
}

// finished stores and posts the recording, if the caller said anything.
func (r *recording) finished(ctx context.Context, c *call) {
	c.cancel(errStopping) // the greeting and the recorder stop with the call
	r.wg.Wait()
	if r.done == nil || !r.started.Load() {
		return // no audio track ever arrived
	}
	<-r.done
	if r.err != nil || r.result == nil || r.result.Duration <= 0 || len(r.result.File) == 0 {
		c.a.log.Info("calls: no voicemail recorded", "room", c.roomID, "err", r.err)
		return // no audio arrived: nothing is posted
	}
	file, dur, waveform := r.result.File, r.result.Duration, r.result.Waveform
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	name := "voicemail-" + time.Now().UTC().Format("20060102-150405") + ".ogg"
	// In an encrypted room the file is encrypted too and the message
	// carries its key in `file` instead of `url`, as Element sends it.
	upload, fileObj, encrypted := file, func(string) any { return nil }, c.a.encryptedRoom(c.me, c.roomID)
	if encrypted {
		upload, fileObj = c.me.Crypto.EncryptFile(file)
	}
	mxc, err := r.vm.Store(ctx, c.me.UserID, upload, name, encrypted)
	if err != nil {
		c.a.log.Warn("calls: store voicemail", "err", err)
		return
	}
	ms := dur.Milliseconds()
	body := fmt.Sprintf("Voicemail from %s (%s)", c.callerName, clock(dur))
	msg := voiceMessage(body, mxc, name, len(file), ms, waveform)
	if encrypted {
		encryptedVoiceMessage(msg, fileObj(mxc))
	}
	content, _ := json.Marshal(msg)
	eventID, err := c.a.sendAs(ctx, c.me, c.roomID, "m.room.message", content, "hearth-voicemail-"+rand.Text())
	if err != nil {
		c.a.log.Warn("calls: post voicemail", "room", c.roomID, "err", err)
		return
	}
	r.vm.add(Message{Caller: c.caller, CallerName: c.callerName, RoomID: c.roomID, EventID: eventID,
		When: time.Now(), DurationMs: ms})
	if r.vm.Notify != nil {
		r.vm.Notify("Voicemail from "+c.callerName, clock(dur))
	}
}

// voiceMessage is the content of a voice message as Element sends it:
// m.audio with the extensible-events audio (MSC1767: duration in ms and
// a waveform) and the voice marker (MSC3245) that makes clients show a
// voice message player.
func voiceMessage(body, mxc, name string, size int, ms int64, waveform []int) map[string]any {
	if waveform == nil {
		waveform = []int{}
	}
	return map[string]any{
		"msgtype":                  "m.audio",
		"body":                     body,
		"url":                      mxc,
		"info":                     map[string]any{"mimetype": "audio/ogg", "size": size, "duration": ms},
		"org.matrix.msc1767.text":  body,
		"org.matrix.msc1767.file":  map[string]any{"url": mxc, "name": name, "mimetype": "audio/ogg", "size": size},
		"org.matrix.msc1767.audio": map[string]any{"duration": ms, "waveform": waveform},
		"org.matrix.msc3245.voice": map[string]any{},
	}
}

// encryptedVoiceMessage turns a voice message's content into that of an
// encrypted attachment: the file object (key, iv, hashes and the mxc URI
// of the ciphertext) takes the place of url, in the content and in the
// extensible-events file (Client-Server API §"Sending encrypted
// attachments").
func encryptedVoiceMessage(msg map[string]any, file any) {
	delete(msg, "url")
	msg["file"] = file
	if f, ok := msg["org.matrix.msc1767.file"].(map[string]any); ok {
		delete(f, "url")
		f["file"] = file
	}
}

// clock writes a duration as m:ss.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
