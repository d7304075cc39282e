// matrix-js-sdk set up the way every Node test here uses it: quiet logs,
// timers that do not hold the process open, and a client with Rust crypto.
// Importing this module applies the global settings, so test files import
// it before they create any client.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as RustCrypto from "@matrix-org/matrix-sdk-crypto-wasm";
import { ClientEvent, SyncState, createClient } from "matrix-js-sdk";
import { logger as sdkLogger } from "matrix-js-sdk/lib/logger.js";
import { withTimeout } from "./hearth.mjs";

// Quiet the SDK (HEARTH_INTEROP_SDK_LOG=debug to see everything). Its root
// logger honours setLevel, but its child loggers (getChild) are pinned to
// DEBUG when created, so set every logger registered with the SDK's loglevel.
const SDK_LOG_LEVEL = process.env.HEARTH_INTEROP_SDK_LOG ?? "error";
sdkLogger.setLevel(SDK_LOG_LEVEL, false);
{
    const sdkRequire = createRequire(fileURLToPath(import.meta.resolve("matrix-js-sdk/package.json")));
    for (const l of Object.values(sdkRequire("loglevel").getLoggers())) l.setLevel(SDK_LOG_LEVEL, false);
}
// SDK quirk: MatrixRTCSessionManager logs "Got room state event for unknown
// room" at ERROR for every state event of a brand-new room, because the SDK
// emits room state before storing the room (matrix-js-sdk#3781, #4808).
if (!process.env.HEARTH_INTEROP_SDK_LOG) sdkLogger.getChild("MatrixRTCSessionManager").setLevel("silent", false);

// SDK quirk: the SDK leaves timers behind that nothing clears. Its
// FetchHttpApi timeoutSignal() ponyfill arms a setTimeout for every request
// (30 s + 80 s = 110 s for each /sync long-poll) and never clears it;
// ServerCapabilities re-arms a ~30 s retry when stopClient() aborts its
// request; the keepalive can re-arm after stopClient() in the start-up error
// path. Once the tests are over these would keep Node idle for up to two
// minutes before the runner can report, so timers created through the global
// setTimeout (the SDK's, and undici's) are unref'd: they still fire while the
// process is alive (the hearth child process keeps it alive during the tests).
// The tests' own timers use realSetTimeout and are unaffected.
export const realSetTimeout = globalThis.setTimeout;
globalThis.setTimeout = function setTimeout(fn, ms, ...args) {
    return realSetTimeout(fn, ms, ...args).unref();
};
globalThis.setTimeout[promisify.custom] = realSetTimeout[promisify.custom];

// The SDK turns the Rust side's tracing on at debug level in every
// initRustCrypto (turned off again in cryptoClient), and names per-room
// crypto loggers after start-up, out of reach of the levels set above:
// unless asked for the SDK's logs, each client gets a logger for errors
// only.
export const quietLogger = {
    trace() {}, debug() {}, info() {}, warn() {},
    error: (...msg) => console.error(...msg),
    getChild: () => quietLogger,
};

/**
 * Polls `cond` until it is true, failing with `what` after `ms`. The
 * polling stops then too: left running, it kept a failed test file's
 * process alive, and `make test` waited for it instead of failing.
 */
export async function until(cond, ms, what) {
    let over = false;
    try {
        await withTimeout(
            (async () => {
                while (!over && !cond()) await new Promise((r) => realSetTimeout(r, 50));
            })(),
            ms,
            what,
        );
    } finally {
        over = true;
    }
}

/**
 * Registers `name` (dummy UIA stage) on the server at `baseUrl` and returns
 * a started client with Rust crypto, added to `clients` for the caller to
 * stop, and the bodies of the /sync responses it received, in order.
 * With `slidingSync`, a function of the new client returning the object
 * that `startClient({ slidingSync })` drives (see slidingsync.test.mjs),
 * the client syncs through it instead of /sync.
 */
export async function cryptoClient(baseUrl, name, clients, { slidingSync } = {}) {
    const res = await fetch(`${baseUrl}/_matrix/client/v3/register`, {
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
        baseUrl,
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
    await client.startClient({ initialSyncLimit: 10, ...(slidingSync ? { slidingSync: slidingSync(client) } : {}) });
    const [state, data] = await withTimeout(ready, 15_000, `${name}: initial sync`);
    assert.equal(state, SyncState.Prepared, `${name}: sync failed: ${data?.error}`);
    return { client, syncs };
}
