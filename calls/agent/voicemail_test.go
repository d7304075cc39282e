package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/hearth-chat/hearth/calls/media"
	"github.com/hearth-chat/hearth/calls/media/mediatest"
	"github.com/hearth-chat/hearth/internal/room"
)

// vmStore keeps what voicemail uploaded and the notifications it showed.
type vmStore struct {
	mu      sync.Mutex
	files   map[string][]byte
	notes   []string
	devices int // EnsureDevice calls
}

func newVoicemailEnv(t *testing.T, cfg Config) (*env, *Voicemail, *vmStore) {
	t.Helper()
	if cfg.Owner.UserID == "" {
		cfg.Owner = owner
	}
	if cfg.VoicemailAfter == 0 {
		cfg.VoicemailAfter = 300 * time.Millisecond
	}
	e := newEnv(t, cfg)
	st := &vmStore{files: map[string][]byte{}}
	vm := &Voicemail{Audio: MediaAudio{Greeting: media.DefaultGreeting(), Dir: t.TempDir()},
		Store: func(_ context.Context, who string, file []byte, name string, _ bool) (string, error) {
			if who != owner.UserID {
				t.Errorf("voicemail stored as %s, want the owner", who)
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			mxc := "mxc://" + testServer + "/vm" + name
			st.files[mxc] = file
			return mxc, nil
		},
		Notify: func(title, body string) {
			st.mu.Lock()
			defer st.mu.Unlock()
			st.notes = append(st.notes, title)
		}}
	vm.EnsureDevice = func(context.Context) error {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.devices++
		return nil
	}
	e.agent.SetVoicemail(vm)
	return e, vm, st
}

func waitConnected(t *testing.T, pc *webrtc.PeerConnection) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		if time.Now().After(deadline) {
			t.Fatalf("caller not connected: %v", pc.ConnectionState())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestVoicemailRecordsTone: a 1:1 call to the owner that nobody answers
// is answered by the owner's voicemail device after voicemail_after; the
// caller's 3 s tone is recorded, stored as the owner's and posted into
// the room as a voice message; the owner is notified and the status
// lists it; nothing of the call is left.
func TestVoicemailRecordsTone(t *testing.T) {
	e, vm, st := newVoicemailEnv(t, Config{})
	alice := user("alice")
	roomID := e.room(alice, owner.UserID)
	e.agent.Start()
	base := runtime.NumGoroutine()
	c := newCallerWith(e, alice, roomID, true)
	c.invite(nil)
	ans := c.awaitAnswer(10 * time.Second)
	if ans.PartyID != owner.DeviceID {
		t.Fatalf("answered by party %q, want the voicemail device %q", ans.PartyID, owner.DeviceID)
	}
	waitConnected(t, c.pc)
	if err := media.PlayOgg(context.Background(), c.tone, bytes.NewReader(mediatest.Tone())); err != nil {
		t.Fatal(err)
	}
	c.hangup()
	ev := c.e.waitFor(&c.pos, 20*time.Second, "voice message", func(ev *room.ClientEvent) bool {
		return ev.Type == "m.room.message" && ev.Sender == owner.UserID
	})
	var msg struct {
		MsgType string `json:"msgtype"`
		Body    string `json:"body"`
		URL     string `json:"url"`
		Info    struct {
			MimeType string `json:"mimetype"`
			Size     int    `json:"size"`
			Duration int64  `json:"duration"`
		} `json:"info"`
		Audio *struct {
			Duration int64 `json:"duration"`
			Waveform []int `json:"waveform"`
		} `json:"org.matrix.msc1767.audio"`
		Voice *struct{} `json:"org.matrix.msc3245.voice"`
	}
	if err := json.Unmarshal(ev.Content, &msg); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	file := st.files[msg.URL]
	notes := append([]string(nil), st.notes...)
	devices := st.devices
	st.mu.Unlock()
	if devices != 1 {
		t.Errorf("the voicemail device was ensured %d times before answering, want 1", devices)
	}
	if msg.MsgType != "m.audio" || msg.Voice == nil || msg.Audio == nil || len(msg.Audio.Waveform) == 0 ||
		msg.Info.MimeType != "audio/ogg" || msg.Info.Size != len(file) || msg.Info.Duration != msg.Audio.Duration ||
		!strings.HasPrefix(msg.Body, "Voicemail from Anna (0:0") {
		t.Fatalf("voice message content: %s", ev.Content)
	}
	rep, err := mediatest.CheckTone(file, mediatest.ToneDuration, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("recording is not the tone: %v (%+v)", err, rep)
	}
	if d := time.Duration(msg.Audio.Duration) * time.Millisecond; d < 2500*time.Millisecond || d > 3500*time.Millisecond {
		t.Fatalf("duration %v, want about 3 s", d)
	}
	if len(notes) != 1 || notes[0] != "Voicemail from Anna" {
		t.Fatalf("notifications %q", notes)
	}
	if l := vm.Messages(); len(l) != 1 || l[0].EventID != ev.EventID || l[0].Caller != alice || l[0].RoomID != roomID {
		t.Fatalf("voicemail list %+v", l)
	}
	c.pc.GracefulClose()
	settle(t, e.agent, base)
}
