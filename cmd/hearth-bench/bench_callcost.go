package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hearth-chat/hearth/calls/media"
	"github.com/hearth-chat/hearth/calls/media/mediatest"
	"github.com/pion/webrtc/v4"
)

// The rows of issue 12's "Speed and size" that cost a call by call: the
// daemon's memory per open echo call and its CPU per voicemail recording.
const (
	callMemMetric = "Daemon anonymous RSS per open echo call (8 at once, audio both ways)"
	vmCPUMetric   = "Daemon CPU for one voicemail call of ~20 s of audio, answer → voice message: total / per second recorded"
)

// openCalls is how many echo calls the memory row holds open at once: the
// agent's MaxCalls (8, calls/agent Config), two per room and per caller.
const openCalls = 8

// toneTrack is a sending audio track for the test tone.
func toneTrack(name string) (*webrtc.TrackLocalStaticSample, error) {
	return webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus,
		ClockRate: 48000, Channels: 2}, "audio", name)
}

// playTone plays mediatest.Tone() (3 s) into t, over and over, until ctx
// is done or, with loops > 0, that many times.
func playTone(ctx context.Context, t *webrtc.TrackLocalStaticSample, loops int) error {
	for i := 0; loops <= 0 || i < loops; i++ {
		if err := media.PlayOgg(ctx, t, bytes.NewReader(mediatest.Tone())); err != nil {
			return err
		}
	}
	return nil
}

// drainTracks reads and drops what the far end sends, as a client plays it.
func drainTracks(pc *webrtc.PeerConnection) {
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
		}
	})
}

// benchCallMemory holds openCalls echo calls open on daemon d (the calls
// section's, warmed by its 200 calls), each sending the tone and getting
// it echoed, and reports the growth of the daemon's RssAnon per call.
// first is a caller already in a room with echo (roomID, since).
func benchCallMemory(ctx context.Context, b *bench, d *daemon, first *user, roomID, since string) row {
	const target = "print (no target)"
	fail := func(err error) row { return errRow(callMemMetric, target, err) }
	type party struct {
		u           *user
		room, since string
	}
	parties := []*party{{u: first, room: roomID, since: since}}
	echo := "@echo:" + d.serverName()
	for i := 1; i < openCalls/2; i++ {
		u, err := b.register(ctx, d, fmt.Sprintf("caller%d", i))
		if err != nil {
			return fail(err)
		}
		var room struct {
			RoomID string `json:"room_id"`
		}
		if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/createRoom", u.token,
			map[string]any{"preset": "private_chat", "invite": []string{echo}}, &room, reqTimeout); err != nil {
			return fail(err)
		}
		s, err := waitEchoJoined(ctx, b, u, room.RoomID, echo)
		if err != nil {
			return fail(err)
		}
		parties = append(parties, &party{u: u, room: room.RoomID, since: s})
	}
	time.Sleep(3 * time.Second)
	before, err := memKB(d.pid, "RssAnon")
	if err != nil {
		return fail(err)
	}
	playCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var open []*placedCall
	defer func() {
		stop()
		wg.Wait()
		for _, c := range open {
			c.hangup()
			c.pc.Close()
		}
	}()
	for i := 0; i < openCalls; i++ {
		p := parties[i/2]
		tr, err := toneTrack(fmt.Sprintf("mem%d", i))
		if err != nil {
			return fail(err)
		}
		c, s, err := placeCall(ctx, b, p.u, p.room, p.since, fmt.Sprintf("mem-%d", i), tr, nil)
		p.since = s
		if err != nil {
			return fail(fmt.Errorf("call %d: %w", i, err))
		}
		open = append(open, c)
		drainTracks(c.pc)
		wg.Add(1)
		go func() { defer wg.Done(); playTone(playCtx, tr, 0) }()
	}
	time.Sleep(2 * time.Second) // media flowing in every call: jitter and SRTP buffers filled
	cpu0, err := cpuTicks(d.pid)
	if err != nil {
		return fail(err)
	}
	const window = 5 * time.Second
	time.Sleep(window)
	cpu1, err := cpuTicks(d.pid)
	if err != nil {
		return fail(err)
	}
	during, err := memKB(d.pid, "RssAnon")
	if err != nil {
		return fail(err)
	}
	// The CPU of the open calls is printed beside for comparison with the
	// voicemail row: each echoes 50 packets/s, decrypting and re-encrypting.
	perCallSec := float64(cpu1-cpu0) * 1000 / clockTicks / openCalls / window.Seconds()
	return row{metric: callMemMetric, target: target, value: fmt.Sprintf("%.0f KiB (%s before → %s with %d calls; CPU %.1f ms per call per s)",
		float64(during-before)/openCalls, mb(before), mb(during), openCalls, perCallSec),
		nums: figs(fig("", float64(during-before)/openCalls, "KiB"))}
}

var (
	bannerUser     = regexp.MustCompile(`(?m)^\s+user\s+(@\S+)\s*$`)
	bannerPassword = regexp.MustCompile(`(?m)^\s+password\s+(\S+)\s*$`)
)

// benchVoicemailCPU starts a daemon whose voicemail answers after 1 s, calls
// its owner in a 1:1 room, sends the tone for 21 s (seven times its 3 s) and
// hangs up, and reports the daemon's CPU from the answer to the voice
// message's arrival in the caller's /sync: the greeting played, the
// recording (depacketizing, Ogg pages, the waveform), the upload and the
// message.
func benchVoicemailCPU(ctx context.Context, b *bench) row {
	const target = "print (recorder's Go benchmark: ~4–5 ms per s of audio)"
	fail := func(err error) row { return errRow(vmCPUMetric, target, err) }
	d, _, err := b.start(ctx, "--voicemail-after", "1")
	if err != nil {
		return fail(err)
	}
	defer b.stop(d)
	logText, err := os.ReadFile(d.logPath)
	if err != nil {
		return fail(err)
	}
	mu, mp := bannerUser.FindSubmatch(logText), bannerPassword.FindSubmatch(logText)
	if mu == nil || mp == nil {
		return fail(fmt.Errorf("no owner credentials in the first-start banner:\n%s", logText))
	}
	ownerID := string(mu[1])
	localpart, _, _ := strings.Cut(strings.TrimPrefix(ownerID, "@"), ":")
	var login struct {
		AccessToken string `json:"access_token"`
	}
	if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": localpart}, "password": string(mp[1])},
		&login, reqTimeout); err != nil {
		return fail(fmt.Errorf("owner login: %w", err))
	}
	u, err := b.register(ctx, d, "vmcaller")
	if err != nil {
		return fail(err)
	}
	var room struct {
		RoomID string `json:"room_id"`
	}
	if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/createRoom", u.token, map[string]any{
		"preset": "trusted_private_chat", "is_direct": true, "invite": []string{ownerID}}, &room, reqTimeout); err != nil {
		return fail(err)
	}
	if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/join/"+url.PathEscape(room.RoomID), login.AccessToken,
		map[string]any{}, nil, reqTimeout); err != nil {
		return fail(fmt.Errorf("owner join: %w", err))
	}
	since, err := waitEchoJoined(ctx, b, u, room.RoomID, ownerID)
	if err != nil {
		return fail(err)
	}
	tr, err := toneTrack("voicemail")
	if err != nil {
		return fail(err)
	}
	var cpu0 int64
	c, since, err := placeCall(ctx, b, u, room.RoomID, since, "vm", tr, func() { cpu0, _ = cpuTicks(d.pid) })
	if err != nil {
		return fail(err)
	}
	defer c.pc.Close()
	drainTracks(c.pc) // the greeting
	if err := playTone(ctx, tr, 7); err != nil {
		return fail(err)
	}
	if err := c.hangup(); err != nil {
		return fail(err)
	}
	var dur float64 // ms, info.duration of the voice message
	for deadline := time.Now().Add(30 * time.Second); dur == 0; {
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("no voice message"))
		}
		s, err := callSyncOnce(ctx, b, u, since)
		if err != nil {
			return fail(err)
		}
		since = s.NextBatch
		for _, ev := range s.Rooms.Join[room.RoomID].Timeline.Events {
			var m struct {
				MsgType string `json:"msgtype"`
				Info    struct {
					Duration float64 `json:"duration"`
				} `json:"info"`
			}
			json.Unmarshal(ev.Content, &m)
			if ev.Type == "m.room.message" && ev.Sender == ownerID && m.MsgType == "m.audio" {
				dur = max(m.Info.Duration, 1)
			}
		}
	}
	cpu1, err := cpuTicks(d.pid)
	if err != nil {
		return fail(err)
	}
	ms := float64(cpu1-cpu0) * 1000 / clockTicks
	return row{metric: vmCPUMetric, target: target, value: fmt.Sprintf("%.0f ms / %.1f ms per s (%.1f s recorded)",
		ms, ms/(dur/1000), dur/1000), nums: figs(fig("total", ms, "ms"), fig("per s", ms/(dur/1000), "ms"))}
}
