// Delayed events (MSC4140) as Element Call's matrix-js-sdk 36 sends them:
// _unstable_sendDelayedStateEvent (the org.matrix.msc4140.delay parameter
// on PUT /state), _unstable_sendDelayedEvent (on PUT /send),
// _unstable_updateDelayedEvent (POST /delayed_events/{id} with the action
// in the body) and _unstable_getDelayedEvents, against a real daemon. The
// SDK checks /versions' org.matrix.msc4140 before each call; a delay over
// the maximum must come back in the shape MatrixRTC's MembershipManager
// reads to retry with the server's maximum.
//
// Run with the other interop tests: `make test-interop`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createClient, MatrixError } from "matrix-js-sdk";
import { Hearth, freePort, sleep, withTimeout } from "./hearth.mjs";
import { quietLogger } from "./sdk.mjs";

const MAX_DELAY_S = 60;
let hearth, dataDir, alice, roomId;

before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "hearth-delayed-"));
    hearth = new Hearth(dataDir, await freePort(), { extraArgs: ["--delayed-events-max-delay", String(MAX_DELAY_S)] });
    await hearth.start();
    const res = await fetch(`${hearth.baseUrl}/_matrix/client/v3/register`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: "alice", password: "alice-pw-123456", auth: { type: "m.login.dummy" } }),
    });
    assert.equal(res.status, 200, "register alice");
    const creds = await res.json();
    alice = createClient({ baseUrl: hearth.baseUrl, userId: creds.user_id, accessToken: creds.access_token,
        deviceId: creds.device_id, logger: quietLogger });
    ({ room_id: roomId } = await alice.createRoom({ preset: "private_chat" }));
});

after(async () => {
    alice?.stopClient();
    await hearth?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const CALL_MEMBER = "org.matrix.msc3401.call.member";

/** The state event's content, or null while there is none. */
async function stateOrNull(stateKey) {
    try {
        return await alice.getStateEvent(roomId, CALL_MEMBER, stateKey);
    } catch (e) {
        if (e instanceof MatrixError && e.httpStatus === 404) return null;
        throw e;
    }
}

test("the server offers delayed events", async () => {
    assert.equal(await alice.doesServerSupportUnstableFeature("org.matrix.msc4140"), true);
});

test("a delayed leave event, restarted as Element Call does, is sent when its delay runs out", async () => {
    const stateKey = `_${alice.getUserId()}_DEVICE1`;
    await alice.sendStateEvent(roomId, CALL_MEMBER, { application: "m.call", call_id: "" }, stateKey);
    const { delay_id: delayId } = await alice._unstable_sendDelayedStateEvent(roomId, { delay: 1500 }, CALL_MEMBER, {}, stateKey);
    assert.equal(typeof delayId, "string");
    const listed = await alice._unstable_getDelayedEvents();
    const mine = listed.delayed_events.find((e) => e.delay_id === delayId);
    assert.ok(mine, `listed: ${JSON.stringify(listed)}`);
    assert.equal(mine.room_id, roomId);
    assert.equal(mine.type, CALL_MEMBER);
    assert.equal(mine.state_key, stateKey);
    assert.equal(mine.delay, 1500);
    assert.deepEqual(mine.content, {});
    await alice._unstable_updateDelayedEvent(delayId, "restart");
    let content;
    await withTimeout((async () => {
        while ((content = await stateOrNull(stateKey)) && Object.keys(content).length > 0) {
            await sleep(50);
        }
    })(), 20_000, "the delayed leave event to be sent");
    assert.deepEqual(content, {});
});

test("send and cancel actions", async () => {
    const sendKey = `_${alice.getUserId()}_DEVICE2`;
    const { delay_id: toSend } = await alice._unstable_sendDelayedStateEvent(roomId, { delay: 50_000 }, CALL_MEMBER, { left: true }, sendKey);
    await alice._unstable_updateDelayedEvent(toSend, "send");
    assert.deepEqual(await stateOrNull(sendKey), { left: true });

    const cancelKey = `_${alice.getUserId()}_DEVICE3`;
    const { delay_id: toCancel } = await alice._unstable_sendDelayedStateEvent(roomId, { delay: 50_000 }, CALL_MEMBER, { left: true }, cancelKey);
    await alice._unstable_updateDelayedEvent(toCancel, "cancel");
    await assert.rejects(alice._unstable_updateDelayedEvent(toCancel, "restart"), (e) => e instanceof MatrixError && e.httpStatus === 409);
    await assert.rejects(alice._unstable_updateDelayedEvent("no-such-delay-id", "restart"),
        (e) => e instanceof MatrixError && e.errcode === "M_NOT_FOUND");
    const listed = await alice._unstable_getDelayedEvents();
    assert.ok(!listed.delayed_events.some((e) => e.delay_id === toCancel || e.delay_id === toSend), JSON.stringify(listed));
    assert.equal(await stateOrNull(cancelKey), null);
});

test("a delay over the maximum is refused in the shape MembershipManager reads", async () => {
    await assert.rejects(
        alice._unstable_sendDelayedStateEvent(roomId, { delay: MAX_DELAY_S * 1000 + 1 }, CALL_MEMBER, {}, `_${alice.getUserId()}_DEVICE4`),
        (e) => e instanceof MatrixError && e.httpStatus === 400 && e.errcode === "M_UNKNOWN" &&
            e.data["org.matrix.msc4140.errcode"] === "M_MAX_DELAY_EXCEEDED" &&
            e.data["org.matrix.msc4140.max_delay"] === MAX_DELAY_S * 1000,
    );
});

test("a delayed message is sent into the timeline", async () => {
    const { delay_id: delayId } = await alice._unstable_sendDelayedEvent(roomId, { delay: 300 }, null, "m.room.message",
        { msgtype: "m.text", body: "sent later" });
    assert.equal(typeof delayId, "string");
    let found;
    await withTimeout((async () => {
        for (;;) {
            const res = await alice.createMessagesRequest(roomId, null, 10, "b");
            found = res.chunk.find((e) => e.type === "m.room.message" && e.content.body === "sent later");
            if (found) return;
            await sleep(50);
        }
    })(), 20_000, "the delayed message to appear");
    assert.equal(found.sender, alice.getUserId());
    assert.equal(found.unsigned?.["org.matrix.msc4140.delay_id"], delayId);
});
