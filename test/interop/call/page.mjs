// The browser side of call.test.mjs: matrix-js-sdk's 1:1 call support
// (lib/webrtc/call) running in a Chromium page, the way Element runs it.
// call.test.mjs bundles this file with esbuild and drives it through
// `window.hearthCall` with page.evaluate; every method returns plain JSON.
//
// The SDK only places and answers calls where RTCPeerConnection and
// getUserMedia exist (supportsMatrixCall), which is why it runs here and
// not in Node. The test's Chromium has fake media devices: getUserMedia
// gives a generated tone, and permission prompts are answered yes.

import { ClientEvent, SyncState, createClient } from "matrix-js-sdk";
import { CallErrorCode, CallEvent, CallState, createNewMatrixCall } from "matrix-js-sdk/lib/webrtc/call.js";
import { CallEventHandlerEvent } from "matrix-js-sdk/lib/webrtc/callEventHandler.js";
import { logger as sdkLogger } from "matrix-js-sdk/lib/logger.js";

// The SDK's logs go to the page console, which the test keeps as an
// artifact; debug level makes a failed call explainable afterwards.
sdkLogger.setLevel(new URLSearchParams(location.search).get("log") ?? "info", false);

let client;
let call; // this page's current call, placed or answered
let states = []; // every CallState the current call went through
let hangupInfo = null; // how the current call ended, once the SDK said so
const incoming = []; // calls the SDK rang with (Call.incoming), oldest first

/** What the page shows, for the screenshot a failed test keeps. */
function show(text) {
    document.getElementById("status").textContent = text;
}

function watch(c) {
    call = c;
    states = [c.state];
    hangupInfo = null;
    show(`${client.getUserId()}: call ${c.callId} ${states.join(" → ")}`);
    c.on(CallEvent.State, (state) => {
        states.push(state);
        show(`${client.getUserId()}: call ${c.callId} ${states.join(" → ")}`);
    });
    c.on(CallEvent.Hangup, () => {
        if (c !== call) return;
        hangupInfo = { reason: c.hangupReason, party: c.hangupParty };
    });
    // Play the other side's audio as Element does: an <audio> element per
    // remote feed.
    c.on(CallEvent.FeedsChanged, (feeds) => {
        for (const feed of feeds) {
            if (feed.isLocal() || document.getElementById(feed.stream.id)) continue;
            const audio = document.createElement("audio");
            audio.id = feed.stream.id;
            audio.autoplay = true;
            audio.srcObject = feed.stream;
            document.body.append(audio);
            audio.play().catch((err) => console.warn("remote audio did not play:", err));
        }
    });
}

/** Resolves when `cond()` is true (polled), or rejects after `ms`. */
function waitFor(cond, ms, what) {
    return new Promise((resolve, reject) => {
        const started = Date.now();
        const tick = () => {
            let v;
            try {
                v = cond();
            } catch (err) {
                reject(err);
                return;
            }
            if (v) resolve(v);
            else if (Date.now() - started > ms) reject(new Error(`timed out after ${ms}ms: ${what}`));
            else setTimeout(tick, 50);
        };
        tick();
    });
}

window.hearthCall = {
    /**
     * Starts a client with a sync loop for an existing session. With
     * forceTURN the SDK gives its peer connections iceTransportPolicy
     * "relay" and only the servers of /voip/turnServer, which startClient
     * fetches (checkTurnServers).
     */
    async start({ baseUrl, userId, accessToken, deviceId, forceTURN }) {
        client = createClient({ baseUrl, userId, accessToken, deviceId, forceTURN });
        client.on(CallEventHandlerEvent.Incoming, (c) => incoming.push(c));
        const ready = new Promise((resolve) => {
            const onSync = (state, _prev, data) => {
                if (state === SyncState.Prepared || state === SyncState.Error) {
                    client.off(ClientEvent.Sync, onSync);
                    resolve([state, data?.error?.message]);
                }
            };
            client.on(ClientEvent.Sync, onSync);
        });
        await client.startClient({ initialSyncLimit: 10 });
        const [state, error] = await ready;
        if (state !== SyncState.Prepared) throw new Error(`initial sync failed: ${error}`);
        show(`${userId}: signed in, no call yet`);
        return { supportsVoip: client.supportsVoip() };
    },

    /** The ICE servers the SDK got from /voip/turnServer, once it has them. */
    async turnServers(ms) {
        await waitFor(() => client.getTurnServers().length > 0, ms, "the SDK to fetch /voip/turnServer");
        return client.getTurnServers();
    },

    /** Places a voice call to `invitee` in `roomId`; resolves once the invite is sent. */
    async placeVoiceCall(roomId, invitee) {
        const c = createNewMatrixCall(client, roomId, { invitee });
        if (!c) throw new Error("this browser does not support Matrix calls");
        watch(c);
        await c.placeVoiceCall();
        return c.callId;
    },

    /** Waits for the SDK to ring with an incoming call (Call.incoming); it becomes this page's call. */
    async ringing(ms) {
        await waitFor(() => incoming.length > 0, ms, "an incoming call");
        const c = incoming.shift();
        watch(c);
        return { callId: c.callId, state: c.state, type: c.type, from: c.getOpponentMember()?.userId };
    },

    /** Answers the ringing call with audio, as the green button does. */
    async answer() {
        await call.answer(true, false);
        return true;
    },

    /** Declines the ringing call (m.call.reject), as the red button does. */
    reject() {
        call.reject();
        return true;
    },

    /** The call's state, the states it went through, and how it ended. */
    status() {
        return { state: call?.state, states, hangup: hangupInfo, callId: call?.callId };
    },

    /**
     * What WebRTC says about the call's media: the inbound audio RTP stream
     * (what the other side's track delivered here) and the candidate pair
     * the ICE agent selected.
     */
    async stats() {
        const pc = call?.peerConn;
        if (!pc) return { connection: null };
        const report = await pc.getStats();
        const byId = new Map();
        report.forEach((s) => byId.set(s.id, s));
        const out = { connection: pc.connectionState, ice: pc.iceConnectionState, inbound: null, pair: null };
        for (const s of byId.values()) {
            if (s.type === "inbound-rtp" && s.kind === "audio") {
                out.inbound = {
                    packetsReceived: s.packetsReceived ?? 0,
                    bytesReceived: s.bytesReceived ?? 0,
                    totalAudioEnergy: s.totalAudioEnergy ?? 0,
                    trackIdentifier: s.trackIdentifier,
                };
            }
        }
        // The selected pair: the transport's, else the nominated succeeded one.
        let pair = null;
        for (const s of byId.values()) {
            if (s.type === "transport" && s.selectedCandidatePairId) pair = byId.get(s.selectedCandidatePairId);
        }
        if (!pair) {
            for (const s of byId.values()) {
                if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
            }
        }
        if (pair) {
            const local = byId.get(pair.localCandidateId);
            const remote = byId.get(pair.remoteCandidateId);
            const brief = (c) => c && { type: c.candidateType, address: c.address, port: c.port, protocol: c.protocol,
                relayProtocol: c.relayProtocol, url: c.url };
            out.pair = { state: pair.state, nominated: pair.nominated, local: brief(local), remote: brief(remote) };
        }
        // Every pair ICE tried, for the record when a call fails.
        out.pairs = [...byId.values()].filter((s) => s.type === "candidate-pair").map((p) => {
            const l = byId.get(p.localCandidateId);
            const r = byId.get(p.remoteCandidateId);
            return `${l?.candidateType}/${l?.relayProtocol ?? l?.protocol} ${l?.address}:${l?.port} -> `
                + `${r?.candidateType} ${r?.address}:${r?.port} ${p.state}${p.nominated ? " nominated" : ""}`
                + ` sent=${p.requestsSent ?? 0} responses=${p.responsesReceived ?? 0}`;
        });
        // The <audio> elements playing the other side, as a person hears it.
        out.playing = call.getRemoteFeeds().map((f) => document.getElementById(f.stream.id))
            .filter((a) => a && !a.paused && a.currentTime > 0).length;
        // The remote track as the page holds it.
        const receiver = pc.getReceivers().find((r) => r.track?.kind === "audio");
        out.remoteTrack = receiver ? { readyState: receiver.track.readyState, muted: receiver.track.muted } : null;
        return out;
    },

    /** Hangs up this page's call as the user would. */
    hangup() {
        call.hangup(CallErrorCode.UserHangup, false);
        return true;
    },

    /**
     * Waits for the SDK to say this page's call is over: the Hangup event,
     * which it emits once the call is Ended and its media stopped.
     */
    async waitEnded(ms) {
        await waitFor(() => hangupInfo && call.state === CallState.Ended, ms,
            `the call to end (state ${call?.state})`);
        return window.hearthCall.status();
    },

    /** Waits for this page's call to reach `state`. */
    async waitState(state, ms) {
        await waitFor(() => call?.state === state, ms, `call state ${state} (now ${call?.state})`);
        return states;
    },

    stop() {
        client?.stopClient();
        return true;
    },

    CallState,
};
document.body.dataset.ready = "true";
