// Interop test over federation, the way Element drives it: two hearth
// daemons federating over loopback TLS (startFederation in hearth.mjs), a
// matrix-js-sdk client with Rust crypto on each. bob@hs2 joins alice's
// encrypted room on hs1 by its alias with the SDK's joinRoom and, with the
// same client and the same sync loop (no reload), sends an encrypted
// message that alice decrypts. His first /sync after the join must carry
// the room's m.room.encryption event and its members, or the SDK cannot
// encrypt ("Cannot encrypt event in unconfigured room").
//
// Run with the other interop tests: `make test-interop`.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import * as RustCrypto from "@matrix-org/matrix-sdk-crypto-wasm";
import { ClientEvent, MatrixEventEvent, SyncState, createClient } from "matrix-js-sdk";
import { logger as sdkLogger } from "matrix-js-sdk/lib/logger.js";
import { startFederation, withTimeout } from "./hearth.mjs";

const SDK_LOG_LEVEL = process.env.HEARTH_INTEROP_SDK_LOG ?? "error";
sdkLogger.setLevel(SDK_LOG_LEVEL, false);
{
    const sdkRequire = createRequire(fileURLToPath(import.meta.resolve("matrix-js-sdk/package.json")));
    for (const l of Object.values(sdkRequire("loglevel").getLoggers())) l.setLevel(SDK_LOG_LEVEL, false);
}
if (!process.env.HEARTH_INTEROP_SDK_LOG) sdkLogger.getChild("MatrixRTCSessionManager").setLevel("silent", false);

// Errors only from the SDK's per-client loggers (see crypto.test.mjs).
const quietLogger = {
    trace() {}, debug() {}, info() {}, warn() {},
    error: (...msg) => console.error(...msg),
    getChild: () => quietLogger,
};

// The SDK leaves timers behind (see interop.test.mjs); unref them so the
// runner can report once the tests are over.
const realSetTimeout = globalThis.setTimeout;
globalThis.setTimeout = function setTimeout(fn, ms, ...args) {
    return realSetTimeout(fn, ms, ...args).unref();
};

let federation;
const clients = [];

after(async () => {
    for (const c of clients) c.stopClient();
    await federation?.stop();
});

/** Polls `cond` until it is true. */
async function until(cond, ms, what) {
    await withTimeout(
        (async () => {
            while (!cond()) await new Promise((r) => realSetTimeout(r, 50));
        })(),
        ms,
        what,
    );
}

/**
 * Registers a user on `hearth` and returns a started client with Rust
 * crypto, and the bodies of the /sync responses it received, in order.
 */
async function cryptoClient(hearth, name) {
    const res = await fetch(`${hearth.baseUrl}/_matrix/client/v3/register`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: name, password: `${name}-pw-123456`, auth: { type: "m.login.dummy" } }),
    });
    assert.equal(res.status, 200, `register ${name}`);
    const creds = await res.json();
    const syncs = [];
    // What the server answered to /sync, as the SDK received it.
    const fetchFn = async (url, init) => {
        const r = await fetch(url, init);
        if (new URL(url).pathname.endsWith("/sync") && r.ok) syncs.push(await r.clone().json());
        return r;
    };
    const client = createClient({
        baseUrl: hearth.baseUrl,
        userId: creds.user_id,
        accessToken: creds.access_token,
        deviceId: creds.device_id,
        fetchFn,
        ...(process.env.HEARTH_INTEROP_SDK_LOG ? {} : { logger: quietLogger }),
    });
    clients.push(client);
    await withTimeout(client.initRustCrypto({ useIndexedDB: false }), 20_000, `${name}: initRustCrypto`);
    if (!process.env.HEARTH_INTEROP_SDK_LOG) new RustCrypto.Tracing(RustCrypto.LoggerLevel.Error).turnOff();
    const ready = new Promise((resolve) => {
        const onSync = (state, _prev, data) => {
            if (state === SyncState.Prepared || state === SyncState.Error) {
                client.off(ClientEvent.Sync, onSync);
                resolve([state, data]);
            }
        };
        client.on(ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 10 });
    const [state, data] = await withTimeout(ready, 15_000, `${name}: initial sync`);
    assert.equal(state, SyncState.Prepared, `${name}: sync failed: ${data?.error}`);
    return { client, syncs };
}

test("matrix-js-sdk over federation: a user of another server joins an encrypted room and talks in it without a reload", { timeout: 120_000 }, async () => {
    federation = await startFederation(["hs1.test", "hs2.test"]);
    const { servers } = federation;
    const { client: alice } = await cryptoClient(servers["hs1.test"], "alice");
    const { client: bob, syncs: bobSyncs } = await cryptoClient(servers["hs2.test"], "bob");
    const aliceId = alice.getUserId();
    const bobId = bob.getUserId();

    const { room_id: roomId } = await alice.createRoom({
        name: "Across the water",
        preset: "public_chat",
        room_alias_name: "water",
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await alice.sendTextMessage(roomId, "before bob came");

    const syncsBefore = bobSyncs.length;
    const joined = await withTimeout(bob.joinRoom("#water:hs1.test"), 30_000, "bob joins over federation");
    assert.equal(joined.roomId, roomId);

    // bob's first /sync that has the room, as hs2 sent it.
    await until(() => bobSyncs.slice(syncsBefore).some((s) => s.rooms?.join?.[roomId]), 20_000, "the room in bob's /sync");
    const first = bobSyncs.slice(syncsBefore).find((s) => s.rooms?.join?.[roomId]).rooms.join[roomId];
    const state = [...(first.state?.events ?? []), ...(first.timeline?.events ?? [])];
    const has = (type, key) => state.some((e) => e.type === type && e.state_key === key);
    assert.ok(has("m.room.encryption", ""), `bob's first sync after the join lacks m.room.encryption: ${JSON.stringify(first)}`);
    assert.ok(has("m.room.member", aliceId), "bob's first sync after the join lacks alice's membership");
    assert.ok(has("m.room.member", bobId), "bob's first sync after the join lacks his own membership");
    assert.ok(has("m.room.name", ""), "bob's first sync after the join lacks the room name");
    assert.equal(first.timeline.limited, true, "the room's history goes back before bob's join: timeline.limited");

    // The SDK now knows the room is encrypted, by the same sync loop.
    await until(() => bob.getRoom(roomId)?.getMyMembership() === "join", 10_000, "bob's client to see the room joined");
    assert.equal(await bob.getCrypto().isEncryptionEnabledInRoom(roomId), true, "bob's client knows the room is encrypted");
    assert.equal(bob.getRoom(roomId).name, "Across the water");

    // alice sees bob, so her client will share her keys with him later;
    // bob's message goes to her device, whose keys hs2 fetches from hs1.
    await until(() => alice.getRoom(roomId)?.getMember(bobId)?.membership === "join", 20_000, "alice to see bob join");

    const body = "hello from the other server";
    const decrypted = new Promise((resolve) => {
        alice.on(MatrixEventEvent.Decrypted, (ev) => {
            if (ev.getRoomId() === roomId && ev.getSender() === bobId && ev.getType() === "m.room.message") resolve(ev);
        });
    });
    await withTimeout(bob.sendTextMessage(roomId, body), 30_000, "bob sends an encrypted message");
    const ev = await withTimeout(decrypted, 30_000, "alice to decrypt bob's message");
    assert.equal(ev.getWireType(), "m.room.encrypted", "the message travelled encrypted");
    assert.equal(ev.isDecryptionFailure(), false);
    assert.equal(ev.getContent().body, body);
});
