// Interop test of Simplified Sliding Sync (MSC4186), the sync Element X and
// other new clients use instead of /sync, against a real `hearth`.
//
// matrix-js-sdk 36.2.0's own SlidingSync class speaks the older MSC3575 (the
// sliding-sync proxy's `org.matrix.msc3575` path, list `ops`, sticky
// extension configs, no `conn_id`), not MSC4186. So:
//   - the room list part (an account in 300 rooms: the first window in
//     bump_stamp order, later windows paging, a new message moving its room
//     to the top, a new invite in an is_invite list, M_UNKNOWN_POS, a room
//     subscription with `$LAZY` members, Element X's growing window and
//     separate encryption connection, a repeated pos, a DM's is_dm and
//     heroes) is a small client written to the MSC text with plain fetch
//     (`sssRequest` and `SSS` below);
//   - the E2EE part runs matrix-js-sdk with its Rust crypto through
//     `client.startClient({ slidingSync })`, as Element Web did: the SDK's
//     SlidingSyncSdk processes the rooms and the e2ee, to_device,
//     account_data, typing and receipts extensions, and `Msc4186Transport`
//     below stands in for the SDK's SlidingSync class as the part that talks
//     MSC4186 to the server. It also rides through a daemon restart.
// Request and response field names are those of the MSC's first
// implementation, which Element X (matrix-rust-sdk) and Synapse speak: list
// `ranges`, `required_state` as [type, state_key] pairs with `*`, `$ME` and
// `$LAZY`, `is_invite`, `pos` and `timeout` as query parameters, a room's
// events in `timeline` and an invite's stripped state in `invite_state`
// (the MSC's later revision renames some of these; its changelog lists
// them). Every response body is checked against the MSC's response schema
// (checkResponse).
//
// Run with the other interop tests: `make test-interop`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { Method } from "matrix-js-sdk";
import { ExtensionState, SlidingSyncEvent, SlidingSyncState } from "matrix-js-sdk/lib/sliding-sync.js";
import { daemonForFile, sleep, withTimeout } from "./hearth.mjs";
import { cryptoClient, realSetTimeout } from "./sdk.mjs";

const SSS_PREFIX = "/_matrix/client/unstable/org.matrix.simplified_msc3575";
const ROOMS = 300;
const WINDOW = 20;

const env = daemonForFile("sss");

/**
 * Polls `cond` until it is true, failing with `what` (and `detail()`, if
 * given) after `ms`. Unlike sdk.mjs's until, it stops polling when it
 * fails, so a failed wait does not keep the test process alive.
 */
async function until(cond, ms, what, detail) {
    const deadline = Date.now() + ms;
    while (!cond()) {
        if (Date.now() > deadline) assert.fail(`timed out after ${ms}ms: ${what}${detail ? `\n${detail()}` : ""}`);
        await new Promise((r) => realSetTimeout(r, 50));
    }
}

// ---------------------------------------------------------------------------
// Plain HTTP.

async function register(name) {
    const res = await fetch(`${env.baseUrl}/_matrix/client/v3/register`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: name, password: `${name}-pw-123456`, auth: { type: "m.login.dummy" } }),
    });
    assert.equal(res.status, 200, `register ${name}: ${await res.clone().text()}`);
    return res.json();
}

/** A Client-Server API call as `user`; fails the test unless it answers 200. */
async function api(user, method, path, body) {
    const res = await fetch(`${env.baseUrl}${path}`, {
        method,
        headers: { Authorization: `Bearer ${user.access_token}`, "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    assert.equal(res.status, 200, `${method} ${path}: ${res.status} ${text}`);
    return JSON.parse(text);
}

let txn = 0;
function sendText(user, roomId, body) {
    return api(user, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/sss-${++txn}`,
        { msgtype: "m.text", body });
}

/** Runs `fn(i)` for i in [0, n), `width` at a time. */
async function pool(n, width, fn) {
    let next = 0;
    await Promise.all(Array.from({ length: width }, async () => {
        while (next < n) await fn(next++);
    }));
}

// ---------------------------------------------------------------------------
// MSC4186 on the wire.

/**
 * One MSC4186 request: POST .../sync with `pos` and `timeout` in the query
 * and the rest in the body. Returns { status, body }; a 200 body is checked
 * against the MSC's response schema first.
 */
async function sssRequest(user, { pos, timeout, body, signal }) {
    const q = new URLSearchParams();
    if (pos !== undefined) q.set("pos", pos);
    if (timeout !== undefined) q.set("timeout", String(timeout));
    const res = await fetch(`${env.baseUrl}${SSS_PREFIX}/sync?${q}`, {
        method: "POST",
        headers: { Authorization: `Bearer ${user.access_token}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal,
    });
    const text = await res.text();
    let json;
    try {
        json = JSON.parse(text);
    } catch {
        assert.fail(`sliding sync answered ${res.status} with a body that is not JSON: ${text.slice(0, 500)}`);
    }
    if (res.status === 200) checkResponse(json, JSON.stringify(body));
    return { status: res.status, body: json };
}

/**
 * One connection (conn_id) of a client that keeps its lists and `pos`, as
 * the MSC's "Connections" section says: each request carries the `pos` of
 * the last response processed.
 */
class SSS {
    constructor(user, connId, lists) {
        this.user = user;
        this.connId = connId;
        this.lists = lists;
        this.pos = undefined;
        this.responses = 0;
    }

    async sync({ timeout = 0, signal } = {}) {
        const body = { conn_id: this.connId, lists: this.lists };
        const { status, body: resp } = await sssRequest(this.user, { pos: this.pos, timeout, body, signal });
        assert.equal(status, 200, `sliding sync ${JSON.stringify(body)} pos=${this.pos}: ${status} ${JSON.stringify(resp)}`);
        this.pos = resp.pos;
        this.responses++;
        return resp;
    }
}

// The response schema of MSC4186 ("Response Body"), with the first
// implementation's field names (see the top of the file). Fields are
// optional unless the MSC says Required; when present they must have the
// MSC's type. `where` names the request in failure messages.
function checkResponse(resp, where) {
    const fail = (msg) => assert.fail(`MSC4186 response shape: ${msg}\nrequest: ${where}\nresponse: ${JSON.stringify(resp).slice(0, 2000)}`);
    const isObj = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
    const isInt = (v) => Number.isInteger(v);
    const isStr = (v) => typeof v === "string";
    const opt = (obj, key, ok, what) => {
        if (key in obj && !ok(obj[key])) fail(`${what}.${key} is ${JSON.stringify(obj[key])}`);
    };
    const arrayOf = (ok) => (v) => Array.isArray(v) && v.every(ok);
    const intMap = (v) => isObj(v) && Object.values(v).every(isInt);
    // A client event of a room as /v3/sync gives it (no room_id needed).
    const clientEvent = (e) => isObj(e) && isStr(e.event_id) && isStr(e.type) && isStr(e.sender) &&
        isInt(e.origin_server_ts) && isObj(e.content);
    const stateEvent = (e) => clientEvent(e) && isStr(e.state_key);
    // A StateStub (state deleted) has only type and state_key.
    const stateOrStub = (e) => stateEvent(e) || (isObj(e) && isStr(e.type) && isStr(e.state_key) && !("content" in e));
    const stripped = (e) => isObj(e) && isStr(e.type) && isStr(e.state_key) && isStr(e.sender) && isObj(e.content);
    const basicEvent = (e) => isObj(e) && isStr(e.type) && isObj(e.content);

    if (!isObj(resp)) fail("not an object");
    if (!isStr(resp.pos) || resp.pos === "") fail("pos (required) is not a non-empty string");
    opt(resp, "lists", isObj, "response");
    opt(resp, "rooms", isObj, "response");
    opt(resp, "extensions", isObj, "response");
    for (const [key, list] of Object.entries(resp.lists ?? {})) {
        if (!isObj(list) || !isInt(list.count) || list.count < 0) fail(`lists.${key}.count (required) is not a count`);
    }
    for (const [roomId, room] of Object.entries(resp.rooms ?? {})) {
        const w = `rooms[${roomId}]`;
        if (!roomId.startsWith("!")) fail(`${w}: key is not a room ID`);
        if (!isObj(room)) fail(`${w} is not an object`);
        opt(room, "bump_stamp", isInt, w);
        opt(room, "membership", (v) => ["join", "invite", "leave", "ban", "knock"].includes(v), w);
        opt(room, "lists", arrayOf(isStr), w);
        opt(room, "name", (v) => v === null || isStr(v), w);
        opt(room, "avatar", (v) => v === null || isStr(v), w);
        opt(room, "heroes", arrayOf((h) => isObj(h) && isStr(h.user_id) &&
            (!("displayname" in h) || isStr(h.displayname)) && (!("avatar_url" in h) || isStr(h.avatar_url))), w);
        for (const flag of ["is_dm", "initial", "expanded_timeline", "unstable_expanded_timeline", "limited"]) {
            opt(room, flag, (v) => typeof v === "boolean", w);
        }
        opt(room, "required_state", arrayOf(stateOrStub), w);
        opt(room, "timeline", arrayOf(clientEvent), w);
        opt(room, "prev_batch", isStr, w);
        for (const n of ["num_live", "joined_count", "invited_count", "notification_count", "highlight_count"]) {
            opt(room, n, (v) => isInt(v) && v >= 0, w);
        }
        if ("num_live" in room && room.num_live > (room.timeline?.length ?? 0)) {
            fail(`${w}.num_live ${room.num_live} counts more events than the timeline holds`);
        }
        opt(room, "invite_state", arrayOf(stripped), w);
        // The MSC's table calls the timeline `timeline_events` while its
        // example, Synapse and every client read `timeline`: an event only
        // under the other name would never reach a client.
        if ("timeline_events" in room && !("timeline" in room)) fail(`${w} has timeline_events but no timeline`);
    }
    const ext = resp.extensions ?? {};
    if ("to_device" in ext) {
        const td = ext.to_device;
        if (!isObj(td) || !isStr(td.next_batch)) fail("extensions.to_device.next_batch is not a string");
        opt(td, "events", arrayOf((e) => basicEvent(e) && isStr(e.sender)), "extensions.to_device");
    }
    if ("e2ee" in ext) {
        const e = ext.e2ee;
        if (!isObj(e)) fail("extensions.e2ee is not an object");
        opt(e, "device_lists", (v) => isObj(v) &&
            (!("changed" in v) || arrayOf(isStr)(v.changed)) && (!("left" in v) || arrayOf(isStr)(v.left)), "extensions.e2ee");
        opt(e, "device_one_time_keys_count", intMap, "extensions.e2ee");
        opt(e, "device_unused_fallback_key_types", arrayOf(isStr), "extensions.e2ee");
    }
    if ("account_data" in ext) {
        const a = ext.account_data;
        if (!isObj(a)) fail("extensions.account_data is not an object");
        opt(a, "global", arrayOf(basicEvent), "extensions.account_data");
        opt(a, "rooms", (v) => isObj(v) && Object.values(v).every(arrayOf(basicEvent)), "extensions.account_data");
    }
    for (const [name, type] of [["receipts", "m.receipt"], ["typing", "m.typing"]]) {
        if (!(name in ext)) continue;
        if (!isObj(ext[name])) fail(`extensions.${name} is not an object`);
        opt(ext[name], "rooms", (v) => isObj(v) && Object.values(v).every((e) => basicEvent(e) && e.type === type),
            `extensions.${name}`);
    }
}

// ---------------------------------------------------------------------------
// matrix-js-sdk over MSC4186.

/**
 * What SlidingSyncSdk needs of the SDK's SlidingSync class (events
 * Lifecycle and RoomData, registerExtension, start, stop), over MSC4186:
 * the simplified path, `conn_id`, and the whole request on every request
 * (nothing is sticky in MSC4186, whose changelog struck "make the lists
 * sticky"; matrix-rust-sdk also resends everything), where the SDK's class
 * sends its extension configs only on a connection's first request. On
 * M_UNKNOWN_POS it starts the connection again without a pos, as the MSC
 * says a client does when the server expires a connection.
 */
class Msc4186Transport extends EventEmitter {
    constructor(client, { connId, lists, timeoutMs = 10_000 }) {
        super();
        this.client = client;
        this.connId = connId;
        this.lists = lists;
        this.timeoutMs = timeoutMs;
        this.extensions = {};
        this.pos = undefined;
        this.stopped = false;
        this.abort = new AbortController();
        this.resets = 0;
    }

    registerExtension(ext) {
        this.extensions[ext.name()] = ext;
    }

    stop() {
        this.stopped = true;
        this.abort.abort();
        this.removeAllListeners();
    }

    async emitAwaited(event, ...args) {
        for (const l of this.listeners(event)) await l(...args);
    }

    async runExtensions(when, data) {
        for (const [name, d] of Object.entries(data)) {
            const ext = this.extensions[name];
            if (ext && ext.when() === when) await ext.onResponse(d);
        }
    }

    async start() {
        while (!this.stopped) {
            // onRequest(true) is the SDK's first-request config: `enabled`
            // and, for to_device, the `since` it has reached.
            const extensions = {};
            for (const [name, ext] of Object.entries(this.extensions)) extensions[name] = ext.onRequest(true);
            const qps = { timeout: String(this.pos === undefined ? 0 : this.timeoutMs) };
            if (this.pos !== undefined) qps.pos = this.pos;
            let resp;
            try {
                resp = await this.client.http.authedRequest(Method.Post, "/sync", qps,
                    { conn_id: this.connId, lists: this.lists, extensions },
                    { prefix: SSS_PREFIX, localTimeoutMs: this.timeoutMs + 10_000, abortSignal: this.abort.signal });
            } catch (err) {
                if (this.stopped) return;
                this.emit(SlidingSyncEvent.Lifecycle, SlidingSyncState.RequestFinished, null, err);
                if (err.errcode === "M_UNKNOWN_POS") {
                    this.pos = undefined;
                    this.resets++;
                } else {
                    await sleep(500);
                }
                continue;
            }
            if (this.stopped) return;
            this.pos = resp.pos;
            resp.rooms ??= {};
            resp.extensions ??= {};
            this.emit(SlidingSyncEvent.Lifecycle, SlidingSyncState.RequestFinished, resp);
            await this.runExtensions(ExtensionState.PreProcess, resp.extensions);
            for (const [roomId, room] of Object.entries(resp.rooms)) {
                room.required_state ??= [];
                room.timeline ??= [];
                await this.emitAwaited(SlidingSyncEvent.RoomData, roomId, room);
            }
            this.emit(SlidingSyncEvent.Lifecycle, SlidingSyncState.Complete, resp);
            await this.runExtensions(ExtensionState.PostProcess, resp.extensions);
        }
    }
}

// ---------------------------------------------------------------------------

test("/versions advertises org.matrix.simplified_msc3575 as clients look for it", async () => {
    const res = await fetch(`${env.baseUrl}/_matrix/client/versions`);
    const versions = await res.json();
    assert.equal(versions.unstable_features?.["org.matrix.simplified_msc3575"], true,
        `unstable_features: ${JSON.stringify(versions.unstable_features)}`);
});

// Shared by the room-list tests below, which run in order.
const list = {};
// Shared by the two matrix-js-sdk tests.
const e2ee = {};

test(`an account in ${ROOMS} rooms: the first window of ${WINDOW} is the most recently active, in bump_stamp order`, { timeout: 120_000 }, async () => {
    list.alice = await register("alice");
    list.bob = await register("bob");
    const { alice } = list;

    // Many rooms at once, then one message into each in a known order: the
    // room written to last is the most recently active.
    const rooms = new Array(ROOMS);
    await pool(ROOMS, 8, async (i) => {
        ({ room_id: rooms[i] } = await api(alice, "POST", "/_matrix/client/v3/createRoom", { name: `room ${i}` }));
    });
    for (let i = 0; i < ROOMS; i++) await sendText(alice, rooms[i], `message ${i}`);
    list.rooms = rooms;
    list.index = new Map(rooms.map((r, i) => [r, i]));
    // Most recent first: the server's list order.
    list.expected = [...rooms].reverse();

    list.conn = new SSS(alice, "ssnode-rooms", {
        all: {
            ranges: [[0, WINDOW - 1]],
            timeline_limit: 1,
            required_state: [["m.room.create", ""], ["m.room.name", ""], ["m.room.member", "$ME"]],
        },
        invites: {
            ranges: [[0, 19]],
            timeline_limit: 1,
            required_state: [["m.room.name", ""], ["m.room.member", "$ME"]],
            filters: { is_invite: true },
        },
    });
    const resp = await list.conn.sync();
    assert.equal(resp.lists?.all?.count, ROOMS, "count of the all list");
    assert.equal(resp.lists?.invites?.count, 0, "count of the is_invite list");
    const got = Object.keys(resp.rooms ?? {});
    assert.deepEqual(new Set(got), new Set(list.expected.slice(0, WINDOW)),
        `the first window holds the ${WINDOW} rooms written to last; got rooms ${got.map((r) => list.index.get(r)).join(",")}`);

    // Clients order the window by bump_stamp (greater is more recent).
    const byStamp = [...got].sort((a, b) => resp.rooms[b].bump_stamp - resp.rooms[a].bump_stamp);
    assert.deepEqual(byStamp.map((r) => list.index.get(r)), list.expected.slice(0, WINDOW).map((r) => list.index.get(r)),
        "rooms sorted by bump_stamp are in the order they were written to");
    list.seen = new Map();
    for (const roomId of got) checkFirstSight(roomId, resp.rooms[roomId]);

    // prev_batch lets a client page back through the room's history.
    const top = list.expected[0];
    const page = await api(alice, "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(top)}/messages?dir=b&limit=1&from=${encodeURIComponent(resp.rooms[top].prev_batch)}`);
    assert.ok(Array.isArray(page.chunk) && page.chunk.length === 1, `/messages from prev_batch: ${JSON.stringify(page)}`);
    assert.notEqual(page.chunk[0].event_id, resp.rooms[top].timeline[0].event_id, "/messages from prev_batch starts before the timeline");
});

/** What a room looks like the first time the connection sends it. */
function checkFirstSight(roomId, room) {
    const i = list.index.get(roomId);
    const w = `room ${i} (${roomId})`;
    assert.ok(!list.seen.has(roomId), `${w} was sent twice`);
    list.seen.set(roomId, room);
    assert.equal(room.initial, true, `${w}: initial`);
    assert.equal(room.name, `room ${i}`, `${w}: name`);
    assert.ok(Number.isInteger(room.bump_stamp), `${w}: bump_stamp`);
    assert.equal(room.timeline?.length, 1, `${w}: timeline_limit 1 gives one event: ${JSON.stringify(room.timeline)}`);
    assert.equal(room.timeline[0].content?.body, `message ${i}`, `${w}: the latest event`);
    assert.equal(room.limited, true, `${w}: limited (the room has older events)`);
    assert.equal(typeof room.prev_batch, "string", `${w}: prev_batch`);
    assert.equal(room.joined_count, 1, `${w}: joined_count`);
    // required_state: exactly what was asked, $ME being alice's own member event.
    const state = new Map((room.required_state ?? []).map((e) => [`${e.type}|${e.state_key}`, e]));
    assert.deepEqual([...state.keys()].sort(),
        ["m.room.create|", `m.room.member|${list.alice.user_id}`, "m.room.name|"],
        `${w}: required_state [create, name, $ME]`);
    assert.equal(state.get("m.room.name|").content.name, `room ${i}`);
    assert.equal(state.get(`m.room.member|${list.alice.user_id}`).content.membership, "join");
}

test("later windows page through every room once: ranges [20,39], [40,59], …", { timeout: 60_000 }, async () => {
    assert.ok(list.conn, "needs the previous test");
    for (let start = WINDOW; start < ROOMS; start += WINDOW) {
        list.conn.lists.all.ranges = [[start, start + WINDOW - 1]];
        const resp = await list.conn.sync();
        assert.equal(resp.lists?.all?.count, ROOMS, `count with range [${start},${start + WINDOW - 1}]`);
        const got = Object.keys(resp.rooms ?? {});
        const want = list.expected.slice(start, start + WINDOW);
        assert.deepEqual(new Set(got), new Set(want),
            `range [${start},${start + WINDOW - 1}]: got rooms ${got.map((r) => list.index.get(r)).join(",")}`);
        for (const roomId of got) checkFirstSight(roomId, resp.rooms[roomId]);
    }
    assert.equal(list.seen.size, ROOMS, "every room was sent");
    // bump_stamps across all windows follow the write order.
    const stamps = list.expected.map((r) => list.seen.get(r).bump_stamp);
    for (let k = 1; k < stamps.length; k++) {
        assert.ok(stamps[k - 1] > stamps[k], `bump_stamp of room ${ROOMS - k} (${stamps[k - 1]}) > room ${ROOMS - k - 1} (${stamps[k]})`);
    }

    // Past the end: nothing more, the count unchanged.
    list.conn.lists.all.ranges = [[ROOMS, ROOMS + WINDOW - 1]];
    let resp = await list.conn.sync();
    assert.equal(resp.lists?.all?.count, ROOMS);
    assert.deepEqual(Object.keys(resp.rooms ?? {}), [], "a range past the end holds no room");

    // Back to the top: those rooms were sent on this connection and have not
    // changed, so they are not sent again (MSC4186 "Lists and subscriptions").
    list.conn.lists.all.ranges = [[0, WINDOW - 1]];
    resp = await list.conn.sync();
    assert.deepEqual(Object.keys(resp.rooms ?? {}), [], "rooms already sent and unchanged are not sent again");
});

test("a new message in the oldest room moves it to the top in the next long-polled response", { timeout: 60_000 }, async (t) => {
    assert.ok(list.conn?.pos, "needs the previous tests");
    const oldest = list.rooms[0];
    const maxStamp = Math.max(...[...list.seen.values()].map((r) => r.bump_stamp));

    // The long-poll is outstanding before the message is sent: nothing has
    // changed for alice, so the server holds it (timeout 20 s).
    let settled = false;
    const poll = list.conn.sync({ timeout: 20_000 }).finally(() => (settled = true));
    await sleep(300);
    assert.equal(settled, false, "the long-poll answered before anything changed");
    const sentAt = Date.now();
    const { event_id: eventId } = await sendText(list.alice, oldest, "back on top");
    const resp = await withTimeout(poll, 15_000, "the long-poll to wake on the new message");
    const wokeAfter = Date.now() - sentAt;

    assert.deepEqual(Object.keys(resp.rooms ?? {}), [oldest], `only the room written to: ${JSON.stringify(resp.rooms)}`);
    const room = resp.rooms[oldest];
    assert.deepEqual(room.timeline?.map((e) => e.event_id), [eventId], "the timeline holds the new event");
    assert.equal(room.timeline[0].content.body, "back on top");
    assert.ok(room.bump_stamp > maxStamp, `its bump_stamp ${room.bump_stamp} is above every other room's (${maxStamp})`);
    assert.equal(resp.lists?.all?.count, ROOMS);

    // The server's own list order moved too: a new connection's first room.
    const fresh = new SSS(list.alice, "ssnode-top", {
        top: { ranges: [[0, 0]], timeline_limit: 1, required_state: [] },
    });
    const first = await fresh.sync();
    list.top = fresh;
    assert.deepEqual(Object.keys(first.rooms ?? {}), [oldest], "index 0 of a new connection is the room just written to");
    assert.equal(first.rooms[oldest].timeline?.[0]?.event_id, eventId);
    t.diagnostic(`long-poll woke ${wokeAfter} ms after the send returned`);
});

test("a new invite from another user appears in the is_invite list", { timeout: 60_000 }, async () => {
    assert.ok(list.conn?.pos, "needs the previous tests");
    const { alice, bob } = list;
    const polls = [];
    const poll = (async () => {
        for (;;) {
            const resp = await list.conn.sync({ timeout: 20_000 });
            polls.push(resp);
            if (resp.lists?.invites?.count > 0) return resp;
            assert.deepEqual(Object.keys(resp.rooms ?? {}), [], `a response before the invite: ${JSON.stringify(resp)}`);
        }
    })();
    await sleep(300);
    const { room_id: roomId } = await api(bob, "POST", "/_matrix/client/v3/createRoom",
        { name: "invite from bob", invite: [alice.user_id] });
    const resp = await withTimeout(poll, 15_000, "alice's long-poll to bring the invite");
    list.inviteRoom = roomId;

    assert.equal(resp.lists.invites.count, 1, "the is_invite list counts the invite");
    // MSC4186: the server's room list holds invites too, so the unfiltered list grows.
    assert.equal(resp.lists.all.count, ROOMS + 1, "the unfiltered list counts the invited room");
    const room = resp.rooms?.[roomId];
    assert.ok(room, `the invited room is in the response: ${JSON.stringify(resp.rooms)}`);
    assert.equal(room.initial, true, "first time the connection sees it");
    if ("membership" in room) assert.equal(room.membership, "invite");
    if ("lists" in room) assert.ok(room.lists.includes("invites"), `room.lists ${room.lists}`);
    assert.ok(Array.isArray(room.invite_state), `invite_state: ${JSON.stringify(room)}`);
    const stripped = new Map(room.invite_state.map((e) => [`${e.type}|${e.state_key}`, e]));
    assert.equal(stripped.get("m.room.name|")?.content?.name, "invite from bob", "the invite's stripped state names the room");
    assert.ok(stripped.has("m.room.create|"), "the invite's stripped state holds the create event");
    const me = stripped.get(`m.room.member|${alice.user_id}`);
    if (me) {
        assert.equal(me.content.membership, "invite");
        assert.equal(me.sender, bob.user_id);
    }
    // The invite carries no timeline of a room alice has not joined.
    assert.ok(!room.timeline?.length, `no timeline for an invite: ${JSON.stringify(room.timeline)}`);
});

test("a forged or unknown pos is answered 400 M_UNKNOWN_POS, and the connection starts again without it", async () => {
    assert.ok(list.alice, "needs the previous tests");
    const body = { conn_id: "ssnode-rooms", lists: { all: { ranges: [[0, 0]], timeline_limit: 1, required_state: [] } } };
    for (const pos of ["forged", "999999999", `${list.conn?.pos ?? ""}0`]) {
        const { status, body: err } = await sssRequest(list.alice, { pos, timeout: 0, body });
        assert.equal(status, 400, `pos=${pos}: ${JSON.stringify(err)}`);
        assert.equal(err.errcode, "M_UNKNOWN_POS", `pos=${pos}`);
    }
    const again = await sssRequest(list.alice, { timeout: 0, body });
    assert.equal(again.status, 200);
    assert.equal(again.body.lists?.all?.count, ROOMS + 1);
    assert.equal(Object.keys(again.body.rooms ?? {}).length, 1, "a new connection sends its window again");
});

test("a room subscription with $LAZY required_state gets the member events of the timeline's senders only", { timeout: 30_000 }, async () => {
    assert.ok(list.alice, "needs the previous tests");
    const { alice, bob } = list;
    const erin = await register("erin");
    const { room_id: roomId } = await api(bob, "POST", "/_matrix/client/v3/createRoom", { name: "lazy room", preset: "public_chat" });
    for (const u of [alice, erin]) await api(u, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
    // erin joined but never speaks: the last three events are alice's and bob's.
    await sendText(bob, roomId, "one");
    await sendText(alice, roomId, "two");
    await sendText(bob, roomId, "three");
    list.lazyRoom = roomId;

    const body = {
        conn_id: "ssnode-sub",
        room_subscriptions: {
            [roomId]: { timeline_limit: 3, required_state: [["m.room.member", "$LAZY"], ["m.room.name", ""]] },
        },
    };
    const { status, body: resp } = await sssRequest(alice, { timeout: 0, body });
    assert.equal(status, 200, JSON.stringify(resp));
    assert.deepEqual(Object.keys(resp.rooms ?? {}), [roomId], "only the subscribed room");
    const room = resp.rooms[roomId];
    assert.equal(room.initial, true);
    assert.ok(!("lists" in room), `a room matched by a subscription only has no lists field: ${room.lists}`);
    assert.equal(room.name, "lazy room");
    assert.deepEqual(room.timeline?.map((e) => e.content?.body), ["one", "two", "three"], "timeline_limit 3");
    assert.equal(room.joined_count, 3);
    const members = (room.required_state ?? []).filter((e) => e.type === "m.room.member").map((e) => e.state_key).sort();
    assert.deepEqual(members, [alice.user_id, bob.user_id].sort(),
        "$LAZY: the member events of the timeline's senders, not erin's");
    assert.ok((room.required_state ?? []).some((e) => e.type === "m.room.name"), "the rest of required_state");
});

// Element X (matrix-rust-sdk's room list and encryption sync services)
// keeps two connections per device: "room-list", one list whose range
// starts at [0,19] and then grows to load the rest, with a long
// required_state that mixes "", "*", "$LAZY" and "$ME" over many state
// types, and receipts for every subscribed room; and "encryption", no list
// at all, only the e2ee and to_device extensions.
test("Element X's shapes: a growing room-list window and a list-less encryption connection, side by side", { timeout: 30_000 }, async () => {
    assert.ok(list.lazyRoom && list.inviteRoom, "needs the previous tests");
    const { alice } = list;
    const requiredState = [
        ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"],
        ["m.room.topic", ""], ["m.room.avatar", ""], ["m.room.canonical_alias", ""], ["m.room.power_levels", ""],
        ["org.matrix.msc3401.call.member", "*"], ["m.room.join_rules", ""], ["m.room.tombstone", ""],
        ["m.room.create", ""], ["m.room.history_visibility", ""], ["io.element.functional_members", ""],
        ["m.space.parent", "*"], ["m.space.child", "*"],
    ];
    const roomList = new SSS(alice, "room-list", {
        all_rooms: { ranges: [[0, 19]], timeline_limit: 1, required_state: requiredState, filters: {} },
    });
    const extensions = {
        account_data: { enabled: true }, receipts: { enabled: true, rooms: ["*"] }, typing: { enabled: true },
        // An extension the server does not know is ignored (MSC4186 "Extensions").
        "org.hearth.test.unknown": { enabled: true },
    };
    const sync = async () => {
        const { status, body } = await sssRequest(alice, {
            pos: roomList.pos, timeout: 0,
            body: { conn_id: roomList.connId, lists: roomList.lists, extensions },
        });
        assert.equal(status, 200, JSON.stringify(body));
        roomList.pos = body.pos;
        return body;
    };
    const encryption = { pos: undefined, since: undefined };
    const syncEncryption = async (timeout = 0) => {
        const { status, body } = await sssRequest(alice, {
            pos: encryption.pos, timeout,
            body: {
                conn_id: "encryption",
                extensions: { to_device: { enabled: true, since: encryption.since }, e2ee: { enabled: true } },
            },
        });
        assert.equal(status, 200, JSON.stringify(body));
        encryption.pos = body.pos;
        encryption.since = body.extensions?.to_device?.next_batch;
        return body;
    };

    const total = ROOMS + 2; // the rooms alice made, bob's invite, the lazy room
    let resp = await sync();
    assert.equal(resp.lists?.all_rooms?.count, total);
    const first = Object.keys(resp.rooms ?? {});
    const top3 = [list.lazyRoom, list.inviteRoom, list.rooms[0]];
    const wantFirst = [...top3, ...list.expected.slice(0, WINDOW - 3)];
    assert.deepEqual(new Set(first), new Set(wantFirst), "the first window: the 20 most recently active rooms");
    const byStamp = [...first].sort((a, b) => resp.rooms[b].bump_stamp - resp.rooms[a].bump_stamp);
    assert.deepEqual(byStamp.slice(0, 3), top3, "bump_stamp order: bob's last message, bob's invite, alice's last message");
    const joined = resp.rooms[list.rooms[0]];
    const types = new Set(joined.required_state.map((e) => `${e.type}|${e.state_key}`));
    for (const t of ["m.room.create|", "m.room.name|", "m.room.power_levels|", "m.room.join_rules|",
        "m.room.history_visibility|", `m.room.member|${alice.user_id}`]) {
        assert.ok(types.has(t), `required_state has ${t}: ${[...types]}`);
    }
    // $LAZY with timeline_limit 1 in the lazy room: bob's member event (he
    // sent its last message), alice's ($ME), not erin's.
    const lazyMembers = resp.rooms[list.lazyRoom].required_state.filter((e) => e.type === "m.room.member").map((e) => e.state_key);
    assert.deepEqual(lazyMembers.sort(), [alice.user_id, list.bob.user_id].sort(), "members by $LAZY and $ME");
    assert.ok(Array.isArray(resp.rooms[list.inviteRoom].invite_state), "the invite comes with its stripped state");
    assert.ok(!("org.hearth.test.unknown" in (resp.extensions ?? {})), "the unknown extension is ignored");
    assert.ok(resp.extensions?.account_data, "the known ones are answered");

    // The encryption connection of the same device is independent of it.
    const enc = await syncEncryption();
    assert.deepEqual(Object.keys(enc.rooms ?? {}), [], "no list, no subscription: no room");
    assert.equal(typeof enc.extensions?.to_device?.next_batch, "string", "to_device extension");
    assert.ok(enc.extensions?.e2ee?.device_one_time_keys_count, "e2ee extension");

    // Growing: [0,99], [0,199], … until the count; each response carries
    // only the rooms the connection has not been sent yet.
    const sent = new Set(first);
    for (let end = 99; ; end += 100) {
        roomList.lists.all_rooms.ranges = [[0, Math.min(end, total - 1)]];
        resp = await sync();
        assert.equal(resp.lists?.all_rooms?.count, total);
        for (const roomId of Object.keys(resp.rooms ?? {})) {
            assert.ok(!sent.has(roomId), `${roomId} sent again while growing to ${end}`);
            assert.equal(resp.rooms[roomId].initial, true);
            sent.add(roomId);
        }
        assert.equal(sent.size, Math.min(end + 1, total), `rooms sent once the range is [0,${end}]`);
        if (end >= total - 1) break;
    }
    // The room-list connection's pos is still good after the other's use.
    await syncEncryption();
    resp = await sync();
    assert.deepEqual(Object.keys(resp.rooms ?? {}), [], "nothing new");

    // The encryption connection's long-poll wakes for a to-device message
    // (a room key, in real use), which the next request acknowledges.
    let settled = false;
    const poll = syncEncryption(20_000).finally(() => (settled = true));
    await sleep(300);
    assert.equal(settled, false, "the encryption long-poll answered before anything changed");
    await api(list.bob, "PUT", `/_matrix/client/v3/sendToDevice/org.hearth.test.key/sss-td-${++txn}`,
        { messages: { [alice.user_id]: { [alice.device_id]: { secret: 42 } } } });
    const woke = await withTimeout(poll, 15_000, "the encryption long-poll to wake on a to-device message");
    assert.deepEqual(woke.extensions?.to_device?.events?.map((e) => [e.type, e.sender, e.content?.secret]),
        [["org.hearth.test.key", list.bob.user_id, 42]], "the to-device message");
    const after = await syncEncryption();
    assert.deepEqual(after.extensions?.to_device?.events ?? [], [], "delivered once: the since acknowledged it");
});

// MSC4186 "Connections": the server cannot assume a response arrived until
// a request carries its pos, and a client that cancels a request sends the
// next one with the same pos, maybe with another body. A phone on a flaky
// network does both.
test("a request repeated with the same pos (a lost response, a cancelled long-poll) gets the same news again", { timeout: 30_000 }, async () => {
    assert.ok(list.alice, "needs the previous tests");
    const { alice } = list;
    const lists = { top: { ranges: [[0, 2]], timeline_limit: 1, required_state: [] } };
    const req = (pos, timeout, body = { conn_id: "ssnode-retry", lists }, signal) =>
        sssRequest(alice, { pos, timeout, body, signal });
    const start = await req(undefined, 0);
    assert.equal(start.status, 200);
    const p1 = start.body.pos;

    const room = list.rooms[7];
    const { event_id: eventId } = await sendText(alice, room, "said once");
    const a = await req(p1, 0);
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.deepEqual(a.body.rooms?.[room]?.timeline?.map((e) => e.event_id), [eventId], "the new message");
    // That response is lost: the client sends p1 again.
    const b = await req(p1, 0);
    assert.equal(b.status, 200, `the same pos again: ${JSON.stringify(b.body)}`);
    assert.deepEqual(b.body.rooms?.[room]?.timeline?.map((e) => e.event_id), [eventId], "the new message, again");

    // A long-poll the client gives up on (to change its lists) and replaces
    // with a request of the same pos and another body.
    const abort = new AbortController();
    const cancelled = req(b.body.pos, 20_000, undefined, abort.signal).catch((err) => err);
    await sleep(200);
    abort.abort();
    assert.equal((await cancelled)?.name, "AbortError", "the long-poll was still waiting");
    const wider = { conn_id: "ssnode-retry", lists: { top: { ...lists.top, ranges: [[0, 5]] } } };
    const c = await req(b.body.pos, 0, wider);
    assert.equal(c.status, 200, `the same pos after a cancelled request: ${JSON.stringify(c.body)}`);
    // The rooms the wider range adds, and only those: the top six (as a new
    // connection sees them) less the rooms this connection was sent.
    const seen = new Set([...Object.keys(start.body.rooms ?? {}), ...Object.keys(a.body.rooms ?? {})]);
    const fresh = await sssRequest(alice, { timeout: 0, body: { conn_id: "ssnode-retry-check", lists: wider.lists } });
    const want = Object.keys(fresh.body.rooms ?? {}).filter((r) => !seen.has(r));
    assert.ok(want.length > 0, "the wider range covers rooms not sent yet");
    assert.deepEqual(new Set(Object.keys(c.body.rooms ?? {})), new Set(want), "the rooms the wider range adds");
});

test("a DM: the is_dm filter follows m.direct, and an unnamed room comes with heroes to name it by", { timeout: 30_000 }, async () => {
    assert.ok(list.alice, "needs the previous tests");
    const { alice, bob } = list;
    await api(bob, "PUT", `/_matrix/client/v3/profile/${encodeURIComponent(bob.user_id)}/displayname`, { displayname: "Bob" });
    const { room_id: roomId } = await api(bob, "POST", "/_matrix/client/v3/createRoom",
        { is_direct: true, preset: "trusted_private_chat", invite: [alice.user_id] });
    await api(alice, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
    await api(alice, "PUT", `/_matrix/client/v3/user/${encodeURIComponent(alice.user_id)}/account_data/m.direct`,
        { [bob.user_id]: [roomId] });

    const conn = new SSS(alice, "ssnode-dm", {
        dms: { ranges: [[0, 9]], timeline_limit: 1, required_state: [], filters: { is_dm: true } },
        rooms: { ranges: [[0, 0]], timeline_limit: 1, required_state: [], filters: { is_dm: false } },
    });
    const resp = await conn.sync();
    assert.equal(resp.lists?.dms?.count, 1, "one DM");
    const all = await sssRequest(alice, { timeout: 0, body: { conn_id: "ssnode-dm-all", lists: { all: { ranges: [[0, 0]], timeline_limit: 0, required_state: [] } } } });
    assert.equal(resp.lists?.rooms?.count, all.body.lists.all.count - 1, "is_dm false: every other room");
    const room = resp.rooms?.[roomId];
    assert.ok(room, `the DM is in the response: ${Object.keys(resp.rooms ?? {})}`);
    assert.equal(room.is_dm, true, "is_dm");
    assert.ok(room.lists === undefined || room.lists.includes("dms"), `room.lists ${room.lists}`);
    assert.ok(room.name === undefined || room.name === null, `no name: ${room.name}`);
    const heroes = room.heroes ?? [];
    assert.deepEqual(heroes.map((h) => h.user_id), [bob.user_id], `heroes: the other member, not alice: ${JSON.stringify(heroes)}`);
    assert.equal(heroes[0].displayname, "Bob", "a hero's display name");
});

test("E2EE through the e2ee and to_device extensions: matrix-js-sdk with Rust crypto, synced only by sliding sync", { timeout: 60_000 }, async () => {
    const lists = {
        all: { ranges: [[0, 19]], timeline_limit: 10, required_state: [["*", "*"]] },
    };
    const transports = {};
    const start = async (name) => {
        const { client, syncs } = await cryptoClient(env.baseUrl, name, env.clients, {
            slidingSync: (c) => (transports[name] = new Msc4186Transport(c, { connId: "ssnode-e2ee", lists })),
        });
        return { client, syncs };
    };
    const { client: carol, syncs: carolSyncs } = await start("carol");
    const { client: dave, syncs: daveSyncs } = await start("dave");
    const daveId = dave.getUserId();

    const { room_id: roomId } = await carol.createRoom({
        name: "secret plans",
        invite: [daveId],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await until(() => dave.getRoom(roomId)?.getMyMembership() === "invite", 15_000, "dave to see the invite through sliding sync");
    await dave.joinRoom(roomId);
    await until(() => dave.getRoom(roomId)?.getMyMembership() === "join", 15_000, "dave's sliding sync to show him joined");
    await until(() => carol.getRoom(roomId)?.getMember(daveId)?.membership === "join", 15_000,
        "carol's sliding sync to show dave joined (required_state carries membership changes)");
    assert.ok(carol.getRoom(roomId).hasEncryptionStateEvent(), "carol's client knows the room is encrypted");

    const body = "meet me by the old oak at dawn";
    const { event_id: eventId } = await carol.sendTextMessage(roomId, body);
    await until(() => dave.getRoom(roomId)?.findEventById(eventId), 15_000, "the encrypted event to reach dave's timeline");
    const ev = dave.getRoom(roomId).findEventById(eventId);
    assert.equal(ev.getWireType(), "m.room.encrypted", "the message travelled encrypted");
    // SlidingSyncSdk maps timeline events without decrypting them; a client
    // decrypts what it shows. The room key travels in a to-device message
    // (to_device extension); if it has not arrived yet, Rust crypto retries
    // the event when it does.
    await dave.decryptEventIfNeeded(ev);
    const sssBodies = (syncs) => syncs.filter((s) => "pos" in s);
    await until(() => ev.getContent()?.body === body, 15_000, "dave to decrypt carol's message",
        () => `dave's extensions: ${JSON.stringify(sssBodies(daveSyncs).map((s) => s.extensions))}`.slice(0, 4000));
    assert.equal(ev.getSender(), carol.getUserId());
    assert.equal(ev.isDecryptionFailure(), false);

    // What carried it, as the SDK received it.
    const daveExt = sssBodies(daveSyncs).map((s) => s.extensions ?? {});
    assert.ok(daveExt.some((e) => e.to_device?.events?.some((m) => m.type === "m.room.encrypted" && m.sender === carol.getUserId())),
        "the room key reached dave as an encrypted to-device message in the to_device extension");
    assert.ok(daveExt.some((e) => e.e2ee && Object.keys(e.e2ee.device_one_time_keys_count ?? {}).length > 0),
        "the e2ee extension gave dave's one-time key counts");
    assert.ok(daveExt.some((e) => Array.isArray(e.e2ee?.device_unused_fallback_key_types)),
        "the e2ee extension gave dave's unused fallback key types");
    const carolExt = sssBodies(carolSyncs).map((s) => s.extensions ?? {});
    assert.ok(carolExt.some((e) => e.e2ee?.device_lists?.changed?.includes(daveId)),
        "carol's e2ee extension listed dave's devices as changed once they shared a room");
    // A to-device message is delivered once: the next request's `since`
    // acknowledges it (MSC3885, as /sync's next_batch does).
    const delivered = daveExt.flatMap((e) => e.to_device?.events ?? []).map((m) => JSON.stringify(m));
    assert.equal(new Set(delivered).size, delivered.length, "no to-device message was delivered twice");
    for (const s of [...sssBodies(daveSyncs), ...sssBodies(carolSyncs)]) checkResponse(s, "matrix-js-sdk over MSC4186");
    assert.equal(transports.carol.resets + transports.dave.resets, 0, "no M_UNKNOWN_POS on a live connection");
    e2ee.transports = transports;
    e2ee.carol = carol;
    e2ee.dave = dave;
    e2ee.roomId = roomId;
    e2ee.eventId = eventId;
});

test("typing, receipts and account_data extensions reach matrix-js-sdk through sliding sync", { timeout: 30_000 }, async () => {
    const { carol, dave, roomId, eventId } = e2ee;
    assert.ok(carol, "needs the previous test");
    const daveId = dave.getUserId();

    await dave.sendTyping(roomId, true, 20_000);
    await until(() => carol.getRoom(roomId)?.getMember(daveId)?.typing === true, 10_000,
        "carol to see dave typing (typing extension)");

    await dave.sendReadReceipt(dave.getRoom(roomId).findEventById(eventId));
    await until(() => carol.getRoom(roomId)?.getReadReceiptForUserId(daveId)?.eventId === eventId, 10_000,
        "carol to see dave's read receipt (receipts extension)");

    await carol.setAccountData("org.hearth.test.sss", { hello: "sliding sync" });
    await until(() => carol.getAccountData("org.hearth.test.sss")?.getContent()?.hello === "sliding sync", 10_000,
        "carol's global account data to come back (account_data extension)");
    await carol.setRoomAccountData(roomId, "org.hearth.test.sss.room", { room: true });
    await until(() => carol.getRoom(roomId)?.getAccountData("org.hearth.test.sss.room")?.getContent()?.room === true, 10_000,
        "carol's room account data to come back (account_data extension)");

    // A state change reaches the other client's room state through
    // required_state (SlidingSyncSdk adds timeline events without applying
    // them to the state, and fakes an m.room.name event from the room's
    // `name` when required_state lacks one).
    const { event_id: nameId } = await carol.setRoomName(roomId, "plans, revised");
    await until(() => dave.getRoom(roomId)?.name === "plans, revised", 10_000, "dave's client to show the new room name");
    assert.equal(dave.getRoom(roomId).currentState.getStateEvents("m.room.name", "")?.getId(), nameId,
        "the m.room.name event came in required_state");
});

test("after a daemon restart a connection's pos is still good or answered M_UNKNOWN_POS, and matrix-js-sdk carries on", { timeout: 60_000 }, async () => {
    const { carol, dave, roomId, transports } = e2ee;
    assert.ok(carol && list.top?.pos, "needs the previous tests");
    await list.top.sync(); // catch up, so that the long-poll below waits
    // A long-poll in flight when the daemon stops is answered with a body a
    // client can read (as /v3/sync's is), or its connection closes; a 200
    // without a body fails the client's JSON parse (sssRequest checks it).
    const inflight = sssRequest(list.alice, {
        pos: list.top.pos, timeout: 20_000, body: { conn_id: list.top.connId, lists: list.top.lists },
    }).catch((err) => (err instanceof assert.AssertionError ? Promise.reject(err) : { status: "closed", err }));
    await sleep(300);
    await env.hearth.stop();
    const answer = await inflight;
    if (answer.status !== 200 && answer.status !== "closed") {
        assert.ok(typeof answer.body?.errcode === "string", `a long-poll cut by the stop: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    await env.hearth.start();

    // MSC4186 "Connections": the server may expire a connection, with a 400
    // M_UNKNOWN_POS; what it may not do is answer anything else.
    const { pos, connId, lists: topLists } = list.top;
    const { status, body } = await sssRequest(list.alice, { pos, timeout: 0, body: { conn_id: connId, lists: topLists } });
    assert.ok(status === 200 || (status === 400 && body.errcode === "M_UNKNOWN_POS"),
        `a pos from before the restart: ${status} ${JSON.stringify(body)}`);

    // The SDK clients' connections went through the same restart.
    const body2 = "the oak has fallen, meet at the mill";
    const { event_id: eventId } = await carol.sendTextMessage(roomId, body2);
    await until(() => dave.getRoom(roomId)?.findEventById(eventId), 20_000, "carol's message after the restart to reach dave");
    const ev = dave.getRoom(roomId).findEventById(eventId);
    await dave.decryptEventIfNeeded(ev);
    await until(() => ev.getContent()?.body === body2, 15_000, "dave to decrypt it");
    if (status === 400) {
        // Each client's retry after the restart carries its old pos.
        await until(() => transports.dave.resets > 0 && transports.carol.resets > 0, 15_000,
            "the SDK clients' connections to be reset with M_UNKNOWN_POS as the raw one was");
    }
});
