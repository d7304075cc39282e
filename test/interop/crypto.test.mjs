// Interop test for end-to-end encryption: two matrix-js-sdk clients with
// the Rust crypto stack (@matrix-org/matrix-sdk-crypto-wasm, the version
// matrix-js-sdk 36.2.0 depends on) against a real `hearth`. One sends an
// encrypted message; the other decrypts it. Hearth only stores and routes
// the keys and to-device messages; all cryptography is the SDK's.
//
// Run with the other interop tests: `make test-interop`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as RustCrypto from "@matrix-org/matrix-sdk-crypto-wasm";
import { ClientEvent, MatrixEventEvent, SyncState, createClient } from "matrix-js-sdk";
import { logger as sdkLogger } from "matrix-js-sdk/lib/logger.js";
import { Hearth, freePort, withTimeout } from "./hearth.mjs";

const SDK_LOG_LEVEL = process.env.HEARTH_INTEROP_SDK_LOG ?? "error";
sdkLogger.setLevel(SDK_LOG_LEVEL, false);
{
    const sdkRequire = createRequire(fileURLToPath(import.meta.resolve("matrix-js-sdk/package.json")));
    for (const l of Object.values(sdkRequire("loglevel").getLoggers())) l.setLevel(SDK_LOG_LEVEL, false);
}
if (!process.env.HEARTH_INTEROP_SDK_LOG) sdkLogger.getChild("MatrixRTCSessionManager").setLevel("silent", false);

// The SDK turns the Rust side's tracing on at debug level in every
// initRustCrypto (turned off again below), and names per-room crypto
// loggers after start-up, out of reach of the levels set above: unless
// asked for the SDK's logs, each client gets a logger for errors only.
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

let hearth;
let dataDir;
let baseUrl;
const clients = [];

before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "hearth-interop-crypto-"));
    hearth = new Hearth(dataDir, await freePort());
    await hearth.start();
    baseUrl = hearth.baseUrl;
});

after(async () => {
    for (const c of clients) c.stopClient();
    await hearth?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Registers a user (dummy UIA stage) and returns a started client with Rust crypto. */
async function cryptoClient(name) {
    const res = await fetch(`${baseUrl}/_matrix/client/v3/register`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: name, password: `${name}-pw-123456`, auth: { type: "m.login.dummy" } }),
    });
    assert.equal(res.status, 200, `register ${name}`);
    const creds = await res.json();
    const client = createClient({
        baseUrl,
        userId: creds.user_id,
        accessToken: creds.access_token,
        deviceId: creds.device_id,
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
    return client;
}

test("matrix-js-sdk with Rust crypto: an encrypted message is decrypted by the other user", { timeout: 60_000 }, async () => {
    const carol = await cryptoClient("carol");
    const dave = await cryptoClient("dave");
    const daveId = dave.getUserId();

    const { room_id: roomId } = await carol.createRoom({
        invite: [daveId],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    // Dave joins once the invite reaches him; carol waits to see the join,
    // so that her client shares the room key with his device.
    await withTimeout(
        (async () => {
            while (!dave.getRoom(roomId)) await new Promise((r) => realSetTimeout(r, 50));
        })(),
        10_000,
        "dave to see the invite",
    );
    await dave.joinRoom(roomId);
    await withTimeout(
        (async () => {
            while (carol.getRoom(roomId)?.getMember(daveId)?.membership !== "join") {
                await new Promise((r) => realSetTimeout(r, 50));
            }
        })(),
        10_000,
        "carol to see dave join",
    );

    const body = "meet me by the old oak at dawn";
    const decrypted = new Promise((resolve) => {
        dave.on(MatrixEventEvent.Decrypted, (ev) => {
            if (ev.getRoomId() === roomId && ev.getType() === "m.room.message") resolve(ev);
        });
    });
    await carol.sendTextMessage(roomId, body);
    const ev = await withTimeout(decrypted, 20_000, "dave to decrypt carol's message");
    assert.equal(ev.getWireType(), "m.room.encrypted", "the message travelled encrypted");
    assert.equal(ev.getContent().body, body);
    assert.equal(ev.getSender(), carol.getUserId());
    assert.equal(ev.isDecryptionFailure(), false);
});
