package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// benchCalls measures the call agent (issue 12) with the echo test user:
// call setup from sending m.call.invite to the caller's peer connection
// connected (ICE and DTLS done, media can flow), over loopback, and the
// daemon's memory before and after 100 sequential echo calls (each hung
// up and its connection closed), once 100 calls filled the caches that
// are bounded by design: an agent that leaked a call's peer connection
// or goroutines would grow by each.
func benchCalls(ctx context.Context, b *bench) []row {
	setupMetric := "Echo call setup, m.call.invite → media connected, 200 sequential calls: p50 / p95"
	memMetric := "Daemon anonymous RSS (heap, stacks) after 100 echo calls → after 100 more"
	const setupTarget, memTarget = "≤ 300 ms", "back to baseline (± a few MiB)"
	fail := func(err error) []row {
		return []row{errRow(setupMetric, setupTarget, err), errRow(memMetric, memTarget, err),
			errRow(callMemMetric, "", err), benchVoicemailCPU(ctx, b)}
	}
	d, _, err := b.start(ctx)
	if err != nil {
		return fail(err)
	}
	defer b.stop(d)
	u, err := b.register(ctx, d, "caller")
	if err != nil {
		return fail(err)
	}
	var room struct {
		RoomID string `json:"room_id"`
	}
	echo := "@echo:" + d.serverName()
	if err := call(ctx, b.hc, d, "POST", "/_matrix/client/v3/createRoom", u.token,
		map[string]any{"preset": "private_chat", "invite": []string{echo}}, &room, reqTimeout); err != nil {
		return fail(err)
	}
	since, err := waitEchoJoined(ctx, b, u, room.RoomID, echo)
	if err != nil {
		return fail(err)
	}
	// 100 calls first: they fill the room engine's bounded event cache
	// (each call stores an invite, an answer and a hang-up), which is
	// memory kept by design; the next 100 must then leave nothing.
	var setups []time.Duration
	calls := func(from int) error {
		for i := from; i < from+100; i++ {
			var setup time.Duration
			setup, since, err = echoCall(ctx, b, u, room.RoomID, since, i)
			if err != nil {
				return fmt.Errorf("call %d: %w", i, err)
			}
			setups = append(setups, setup)
		}
		return nil
	}
	if err := calls(0); err != nil {
		return fail(err)
	}
	time.Sleep(2 * time.Second)
	// RssAnon is the process's own memory (Go heap, stacks): the mapped
	// bbolt file (RssFile) grows with every event stored, calls or not.
	before, err := memKB(d.pid, "RssAnon")
	if err != nil {
		return fail(err)
	}
	file0, err := memKB(d.pid, "RssFile")
	if err != nil {
		return fail(err)
	}
	if err := calls(100); err != nil {
		return fail(err)
	}
	time.Sleep(5 * time.Second) // hung-up calls' buffers return to the Go heap, then GC
	after, err := memKB(d.pid, "RssAnon")
	if err != nil {
		return fail(err)
	}
	file1, err := memKB(d.pid, "RssFile")
	if err != nil {
		return fail(err)
	}
	return []row{
		{metric: setupMetric, target: setupTarget, value: fmt.Sprintf("%v / %v", pct(setups, 50).Round(time.Millisecond), pct(setups, 95).Round(time.Millisecond)),
			nums: figs(fig("p50", msF(pct(setups, 50)), "ms"), fig("p95", msF(pct(setups, 95)), "ms"))},
		{metric: memMetric, target: memTarget, value: fmt.Sprintf("%s → %s (mapped files: %s → %s)",
			mb(before), mb(after), mb(file0), mb(file1)), nums: figs(fig("before", mibF(before), "MiB"), fig("after", mibF(after), "MiB"))},
		benchCallMemory(ctx, b, d, u, room.RoomID, since),
		benchVoicemailCPU(ctx, b),
	}
}

// callSync is the part of /sync an echo call looks at.
type callSync struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events []struct {
					Type     string          `json:"type"`
					Sender   string          `json:"sender"`
					StateKey *string         `json:"state_key"`
					Content  json.RawMessage `json:"content"`
				} `json:"events"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

func callSyncOnce(ctx context.Context, b *bench, u *user, since string) (*callSync, error) {
	q := url.Values{"timeout": {"5000"}}
	if since != "" {
		q.Set("since", since)
	}
	var out callSync
	err := call(ctx, b.hc, u.d, "GET", "/_matrix/client/v3/sync?"+q.Encode(), u.token, nil, &out, 20*time.Second)
	return &out, err
}

func waitEchoJoined(ctx context.Context, b *bench, u *user, roomID, echo string) (string, error) {
	since := ""
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		s, err := callSyncOnce(ctx, b, u, since)
		if err != nil {
			return "", err
		}
		since = s.NextBatch
		for _, ev := range s.Rooms.Join[roomID].Timeline.Events {
			var c struct {
				Membership string `json:"membership"`
			}
			json.Unmarshal(ev.Content, &c)
			if ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == echo && c.Membership == "join" {
				return since, nil
			}
		}
	}
	return "", fmt.Errorf("echo did not join the room")
}

var callAPI = func() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		panic(err)
	}
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m))
}()

// echoCall places one audio call to echo and returns the time from the
// invite to connected media; it hangs up and closes its connection.
func echoCall(ctx context.Context, b *bench, u *user, roomID, since string, n int) (time.Duration, string, error) {
	c, since, err := placeCall(ctx, b, u, roomID, since, "bench-"+strconv.Itoa(n), nil, nil)
	if err != nil {
		return 0, since, err
	}
	defer c.pc.Close()
	if err := c.hangup(); err != nil {
		return 0, since, err
	}
	runtime.Gosched()
	return c.setup, since, nil
}

// placedCall is a caller's connected call: its peer connection, the time
// from invite to connected media, and its hang-up.
type placedCall struct {
	pc     *webrtc.PeerConnection
	setup  time.Duration
	hangup func() error
}

// placeCall sends an audio call invite in roomID, waits for the answer
// (onAnswer, if set, runs as it arrives) and for connected media. With a
// track the caller sends it; otherwise its transceiver is receive-only.
// The caller closes the returned peer connection.
func placeCall(ctx context.Context, b *bench, u *user, roomID, since, prefix string,
	track webrtc.TrackLocal, onAnswer func()) (*placedCall, string, error) {
	pc, err := callAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, since, err
	}
	ok := false
	defer func() {
		if !ok {
			pc.Close()
		}
	}()
	if track != nil {
		_, err = pc.AddTrack(track)
	} else {
		_, err = pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio)
	}
	if err != nil {
		return nil, since, err
	}
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, since, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, since, err
	}
	<-gathered
	callID := prefix + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	send := func(typ string, content map[string]any) error {
		content["call_id"], content["party_id"], content["version"] = callID, "BENCH", "1"
		txn := "c" + strconv.FormatInt(u.txn.Add(1), 10)
		return call(ctx, b.hc, u.d, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/"+typ+"/"+txn,
			u.token, content, nil, reqTimeout)
	}
	t0 := time.Now()
	if err := send("m.call.invite", map[string]any{"lifetime": 60000,
		"offer": map[string]any{"type": "offer", "sdp": pc.LocalDescription().SDP}}); err != nil {
		return nil, since, err
	}
	var answer string
	for answer == "" {
		if time.Since(t0) > 20*time.Second {
			return nil, since, fmt.Errorf("no answer")
		}
		s, err := callSyncOnce(ctx, b, u, since)
		if err != nil {
			return nil, since, err
		}
		since = s.NextBatch
		for _, ev := range s.Rooms.Join[roomID].Timeline.Events {
			var c struct {
				CallID string `json:"call_id"`
				Answer struct {
					SDP string `json:"sdp"`
				} `json:"answer"`
			}
			json.Unmarshal(ev.Content, &c)
			if ev.Type == "m.call.answer" && c.CallID == callID {
				answer = c.Answer.SDP
			}
		}
	}
	if onAnswer != nil {
		onAnswer()
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return nil, since, err
	}
	select {
	case <-connected:
	case <-time.After(20 * time.Second):
		return nil, since, fmt.Errorf("media did not connect")
	case <-ctx.Done():
		return nil, since, ctx.Err()
	}
	ok = true
	return &placedCall{pc: pc, setup: time.Since(t0), hangup: func() error {
		return send("m.call.hangup", map[string]any{"reason": "user_hangup"})
	}}, since, nil
}
