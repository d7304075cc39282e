// Interop test for calls in encrypted rooms: a matrix-js-sdk client with
// the Rust crypto stack (as Element runs it) invites @echo to an encrypted
// room and calls it. Hearth's echo test user answers as an E2EE device of
// its own (mautrix-go's Olm machine in the daemon): the SDK must decrypt
// echo's hello and answer, and echo must decrypt the SDK's invite, whose
// room key the SDK shared with echo's device like with any device.
// Signalling only: the media side of calls is call.test.mjs's.
//
// Run with the other interop tests: `make test-interop`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { MatrixEventEvent } from "matrix-js-sdk";
import { logger as sdkLogger } from "matrix-js-sdk/lib/logger.js";
import { SERVER_NAME, daemonForFile, withTimeout } from "./hearth.mjs";
import { cryptoClient, until } from "./sdk.mjs";

const env = daemonForFile("calle2ee");

// An offer the way a browser makes one, for one audio track sent and
// received (Opus); nothing answers its ICE, which this test does not need.
const offer = [
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0",
    "a=msid-semantic: WMS stream",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Hrth",
    "a=ice-pwd:hearthinteropicepassword",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 " + Array.from({ length: 32 }, (_, i) => (i * 7 + 16).toString(16).toUpperCase().padStart(2, "0")).join(":"),
    "a=setup:actpass",
    "a=mid:0",
    "a=sendrecv",
    "a=msid:stream audio",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=ssrc:1001 cname:hearth",
    "",
].join("\r\n");

/** Resolves with the first event of `client` decrypted in `roomId` that `match` accepts. */
function decrypted(client, roomId, match) {
    return new Promise((resolve) => {
        const on = (ev) => {
            if (ev.getRoomId() === roomId && !ev.isDecryptionFailure() && match(ev)) {
                client.off(MatrixEventEvent.Decrypted, on);
                resolve(ev);
            }
        };
        client.on(MatrixEventEvent.Decrypted, on);
    });
}

test("matrix-js-sdk with Rust crypto calls @echo in an encrypted room: both sides decrypt", { timeout: 90_000 }, async () => {
    const { client: carol } = await cryptoClient(env.baseUrl, "carol", env.clients);
    const echo = `@echo:${SERVER_NAME}`;

    const { room_id: roomId } = await carol.createRoom({
        invite: [echo],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    // The SDK's per-room encryption logger is made at debug level, out of
    // reach of sdk.mjs's settings (see there): quiet it once it exists.
    if (!process.env.HEARTH_INTEROP_SDK_LOG) sdkLogger.getChild(`[${roomId} encryption]`).setLevel("silent", false);
    const hello = decrypted(carol, roomId, (ev) => ev.getSender() === echo && ev.getType() === "m.room.message");
    await until(() => carol.getRoom(roomId)?.getMember(echo)?.membership === "join", 15_000, "echo to join");
    const helloEv = await withTimeout(hello, 20_000, "carol to decrypt echo's hello");
    assert.equal(helloEv.getWireType(), "m.room.encrypted", "echo's hello travelled encrypted");
    assert.equal(helloEv.getContent().msgtype, "m.notice");

    const callId = `interop-${Date.now()}`;
    const answer = decrypted(carol, roomId, (ev) => ev.getType() === "m.call.answer" && ev.getContent().call_id === callId);
    // The SDK encrypts it (the room is encrypted) after sharing its room
    // key with the room's devices, echo's among them.
    await carol.sendEvent(roomId, "m.call.invite", {
        call_id: callId,
        party_id: carol.getDeviceId(),
        version: "1",
        lifetime: 60000,
        offer: { type: "offer", sdp: offer },
    });
    const ans = await withTimeout(answer, 20_000, "carol to decrypt echo's answer");
    assert.equal(ans.getWireType(), "m.room.encrypted", "the answer travelled encrypted");
    assert.equal(ans.getSender(), echo);
    assert.equal(ans.getContent().answer?.type, "answer");
    assert.match(ans.getContent().answer?.sdp ?? "", /^v=0/);
    await carol.sendEvent(roomId, "m.call.hangup", {
        call_id: callId,
        party_id: carol.getDeviceId(),
        version: "1",
        reason: "user_hangup",
    });
});
