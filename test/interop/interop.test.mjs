// Interop test: drives a real `hearth` daemon with matrix-js-sdk, the way a
// real Matrix client (Element and friends) talks to a homeserver.
//
// Run with:  cd test/interop && HEARTH_BIN=/path/to/bin/hearth node --test --test-reporter=spec
// (or `make test-interop` from the repository root).
//
// The daemon's stdout/stderr go to test/interop/artifacts/hearth-<pid>-<n>.log.
// Set HEARTH_INTEROP_KEEP=1 to keep the temporary data directory afterwards.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { access, constants, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import {
    ClientEvent,
    Direction,
    EventType,
    InteractiveAuth,
    Method,
    MsgType,
    Preset,
    RoomEvent,
    SyncState,
    createClient,
} from "matrix-js-sdk";
import { HEARTH_BIN, Hearth, SERVER_NAME, freePort, sleep, withTimeout } from "./hearth.mjs";
import "./sdk.mjs"; // quiets the SDK and unrefs its timers

const PASSWORD = { alice: "alice-correct-horse-1", bob: "bob-battery-staple-2" };
const HISTORY = 30;

// ---------------------------------------------------------------------------
// Small helpers.

/**
 * Resolves with the listener arguments of the first `event` on `emitter` for
 * which `predicate(...args)` is true. Attach it BEFORE triggering the event.
 */
function waitForEvent(emitter, event, predicate, ms, what) {
    let listener;
    const p = new Promise((resolve) => {
        listener = (...args) => {
            if (predicate(...args)) resolve(args);
        };
        emitter.on(event, listener);
    });
    return withTimeout(p, ms, what ?? `event ${event}`).finally(() => emitter.off(event, listener));
}

// ---------------------------------------------------------------------------
// Client plumbing, as a real client does it.

/**
 * Registers through User-Interactive Auth, exactly like Element: the first
 * POST /register has no `auth`, the server answers 401 with flows and a
 * session, InteractiveAuth picks the m.login.dummy flow and retries.
 */
async function register(baseUrl, username, password) {
    const anon = createClient({ baseUrl, fetchFn: recordingFetch });
    let firstUiaResponse = null;
    const ia = new InteractiveAuth({
        matrixClient: anon,
        doRequest: async (auth) => {
            try {
                return await anon.registerRequest({
                    username,
                    password,
                    initial_device_display_name: `interop ${username}`,
                    ...(auth ? { auth } : {}),
                });
            } catch (err) {
                if (!auth && err.httpStatus === 401) firstUiaResponse = err.data;
                throw err;
            }
        },
        stateUpdated: () => {},
        requestEmailToken: () => {
            throw new Error("no email stage expected");
        },
    });
    const res = await withTimeout(ia.attemptAuth(), 10_000, `registering ${username}`);
    return { res, firstUiaResponse };
}

async function passwordLogin(baseUrl, username, password) {
    const anon = createClient({ baseUrl, fetchFn: recordingFetch });
    return await withTimeout(
        anon.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: username },
            password,
            initial_device_display_name: `interop ${username} (login)`,
        }),
        10_000,
        `logging in ${username}`,
    );
}

const clients = new Set();

// Every request the server did not recognise (404/405 M_UNRECOGNIZED), as
// "METHOD /path"; reported after the run, as a hint of missing endpoints.
const unrecognized = new Set();

async function recordingFetch(input, init) {
    const res = await fetch(input, init);
    if (res.status === 404 || res.status === 405) {
        const body = await res
            .clone()
            .json()
            .catch(() => null);
        if (body?.errcode === "M_UNRECOGNIZED") {
            unrecognized.add(`${init?.method ?? "GET"} ${new URL(String(input)).pathname} -> ${res.status}`);
        }
    }
    return res;
}

function clientFor(baseUrl, creds) {
    const c = createClient({
        fetchFn: recordingFetch,
        baseUrl,
        userId: creds.user_id,
        accessToken: creds.access_token,
        deviceId: creds.device_id,
        timelineSupport: true,
    });
    clients.add(c);
    return c;
}

async function startAndWaitPrepared(client, opts = {}) {
    // During start-up against a local server any sync ERROR is a real
    // problem (the SDK would retry forever), so fail fast and say why.
    const ready = waitForEvent(
        client,
        ClientEvent.Sync,
        (state) => state === SyncState.Prepared || state === SyncState.Error,
        15_000,
        `${client.getUserId()} initial sync (PREPARED)`,
    );
    await client.startClient({ initialSyncLimit: 20, ...opts });
    const [state, , data] = await ready;
    if (state === SyncState.Error) {
        const err = data?.error;
        client.stopClient();
        throw new Error(`${client.getUserId()}: sync start-up failed: ${err?.errcode ?? ""} ${err?.message ?? err}`);
    }
}

/** Waits until `client` sees, through its sync loop, an m.room.message with this body. */
function waitForMessage(client, roomId, sender, body, ms = 10_000) {
    return waitForEvent(
        client,
        RoomEvent.Timeline,
        (event, room, toStartOfTimeline) =>
            room?.roomId === roomId &&
            !toStartOfTimeline &&
            event.getType() === EventType.RoomMessage &&
            event.getSender() === sender &&
            event.getContent().body === body,
        ms,
        `${client.getUserId()} to receive "${body}" from ${sender}`,
    ).then(([event]) => event);
}

/**
 * Pages backwards through /messages from the live end to the start of the
 * room and returns every event in chronological order.
 */
async function allEventsViaMessages(client, roomId, pageSize = 7) {
    const pages = [];
    let from = null;
    for (let i = 0; i < 100; i++) {
        const res = await withTimeout(
            client.createMessagesRequest(roomId, from, pageSize, Direction.Backward),
            5000,
            `/messages page ${i}`,
        );
        assert.ok(Array.isArray(res.chunk), "/messages: chunk must be an array");
        assert.equal(typeof res.start, "string", "/messages: start is required");
        assert.ok(res.chunk.length <= pageSize, `/messages returned ${res.chunk.length} events for limit=${pageSize}`);
        pages.push(res.chunk);
        // Spec: "If no further events are available (either because we have
        // reached the start of the timeline, or because the user does not have
        // permission to see any more events), this property is omitted".
        if (!res.end) return pages.flat().reverse();
        assert.ok(res.chunk.length > 0, `/messages: empty chunk but an end token (${res.end}) to go on from`);
        assert.notEqual(res.end, from, "/messages: end token did not advance");
        from = res.end;
    }
    assert.fail("/messages never stopped returning an end token (100 pages)");
}

const bodies = (events) => events.filter((e) => e.type === EventType.RoomMessage).map((e) => e.content.body);

// ---------------------------------------------------------------------------
// The scenario. Steps share state and run in order; once a critical step
// fails, the rest are skipped (they would only time out on missing state).

let brokenBy = null;

function step(name, opts, fn) {
    if (typeof opts === "function") [fn, opts] = [opts, {}];
    const { critical = true, ...testOpts } = opts;
    test(name, testOpts, async (t) => {
        if (brokenBy) {
            t.skip(`skipped, an earlier step failed: ${brokenBy}`);
            return;
        }
        try {
            await fn(t);
        } catch (err) {
            if (critical) brokenBy = name;
            throw err;
        }
    });
}

describe("hearth ⇄ matrix-js-sdk", { timeout: 60_000 }, () => {
    let dataDir;
    let hearth;
    const users = {}; // name -> { creds, client }
    let alice2; // alice's client after the restart (new device, password login)
    let roomId;
    const roomName = "Interop Room";
    const aliasLocal = `interop-${process.pid}`;
    const alias = `#${aliasLocal}:${SERVER_NAME}`;
    const expectedBodies = []; // every m.room.message body, in send order
    let aliceSavedSyncToken; // alice's next_batch, saved before the restart
    let bodiesBeforeRestart;

    before(async () => {
        await access(HEARTH_BIN, constants.X_OK).catch(() => {
            throw new Error(`HEARTH_BIN=${HEARTH_BIN} is not an executable; build it with 'make build'`);
        });
        dataDir = await mkdtemp(path.join(os.tmpdir(), "hearth-interop-"));
        hearth = new Hearth(dataDir, await freePort());
        await hearth.start();
    });

    after(async () => {
        for (const c of clients) {
            try {
                c.stopClient();
            } catch {
                // already stopped
            }
        }
        if (hearth) await hearth.stop().catch((err) => console.error(String(err)));
        if (brokenBy && hearth) console.error(`hearth logs: ${hearth.logPath}`);
        if (unrecognized.size) {
            console.error(`requests hearth did not recognise:\n  ${[...unrecognized].sort().join("\n  ")}`);
        }
        if (dataDir && !process.env.HEARTH_INTEROP_KEEP) {
            await rm(dataDir, { recursive: true, force: true });
        } else if (dataDir) {
            console.error(`kept data dir ${dataDir}`);
        }
    });

    step("alice and bob register through user-interactive auth", async () => {
        for (const name of ["alice", "bob"]) {
            const { res, firstUiaResponse } = await register(hearth.baseUrl, name, PASSWORD[name]);
            // The first request, without auth, must be a UIA 401 offering m.login.dummy.
            assert.ok(firstUiaResponse, "first /register without auth should be a 401 UIA response");
            assert.equal(typeof firstUiaResponse.session, "string");
            assert.ok(
                firstUiaResponse.flows.some((f) => f.stages.length === 1 && f.stages[0] === "m.login.dummy"),
                `flows should offer m.login.dummy: ${JSON.stringify(firstUiaResponse.flows)}`,
            );
            assert.equal(res.user_id, `@${name}:${SERVER_NAME}`);
            assert.equal(typeof res.access_token, "string");
            assert.equal(typeof res.device_id, "string");
            const client = clientFor(hearth.baseUrl, res);
            const who = await client.whoami();
            assert.equal(who.user_id, res.user_id);
            assert.equal(who.device_id, res.device_id);
            users[name] = { creds: res, client };
        }
    });

    step("both clients start their sync loop and complete an initial sync", async () => {
        await Promise.all([startAndWaitPrepared(users.alice.client), startAndWaitPrepared(users.bob.client)]);
    });

    step("alice creates a named room with an alias and invites bob, who joins from sync", async () => {
        const alice = users.alice.client;
        const bob = users.bob.client;
        const bobId = users.bob.creds.user_id;

        const created = await alice.createRoom({
            name: roomName,
            room_alias_name: aliasLocal,
            preset: Preset.PrivateChat,
        });
        roomId = created.room_id;
        assert.match(roomId, /^!.+/);

        const resolved = await alice.getRoomIdForAlias(alias);
        assert.equal(resolved.room_id, roomId);

        // Bob learns about the invite through his sync loop.
        const invited = waitForEvent(
            bob,
            RoomEvent.MyMembership,
            (room, membership) => room.roomId === roomId && membership === "invite",
            10_000,
            "bob to see the invite via sync",
        );
        await alice.invite(roomId, bobId);
        const [inviteRoom] = await invited;
        const inviteEvent = inviteRoom.currentState.getMember(bobId)?.events.member;
        assert.equal(inviteEvent?.getSender(), users.alice.creds.user_id, "invite should come from alice");
        assert.equal(inviteRoom.name, roomName, "the invite's stripped state carries m.room.name");

        // Alice sees bob's join through her sync loop.
        const aliceSeesJoin = waitForEvent(
            alice,
            RoomEvent.Timeline,
            (ev, room) =>
                room?.roomId === roomId &&
                ev.getType() === EventType.RoomMember &&
                ev.getStateKey() === bobId &&
                ev.getContent().membership === "join",
            10_000,
            "alice to see bob's join",
        );
        const bobJoined = waitForEvent(
            bob,
            RoomEvent.MyMembership,
            (room, membership) => room.roomId === roomId && membership === "join",
            10_000,
            "bob's own sync to show him joined",
        );
        await bob.joinRoom(roomId);
        await Promise.all([aliceSeesJoin, bobJoined]);

        const bobRoom = bob.getRoom(roomId);
        assert.equal(bobRoom.name, roomName, "bob sees the room name from m.room.name");
        assert.equal(bobRoom.getCanonicalAlias(), alias, "createRoom(room_alias_name) sets m.room.canonical_alias");
        assert.equal(bobRoom.getMyMembership(), "join");
        const joined = (await bob.getJoinedRooms()).joined_rooms;
        assert.ok(joined.includes(roomId), "joined_rooms lists the room for bob");
    });

    step("alice and bob exchange messages and receive them through the sync loop", async () => {
        const alice = users.alice.client;
        const bob = users.bob.client;
        const aliceId = users.alice.creds.user_id;
        const bobId = users.bob.creds.user_id;

        let received = waitForMessage(bob, roomId, aliceId, "hello bob");
        const sent = await alice.sendTextMessage(roomId, "hello bob");
        expectedBodies.push("hello bob");
        let event = await received;
        assert.equal(event.getId(), sent.event_id);

        received = waitForMessage(alice, roomId, bobId, "hi alice");
        const sent2 = await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: "hi alice" });
        expectedBodies.push("hi alice");
        event = await received;
        assert.equal(event.getId(), sent2.event_id);

        // The sender's own sync echoes its event back (remote echo replaces local echo).
        await withTimeout(
            (async () => {
                for (;;) {
                    const ev = alice.getRoom(roomId).findEventById(sent.event_id);
                    if (ev && ev.status === null) return;
                    await sleep(25);
                }
            })(),
            5000,
            "alice's message to be confirmed by her own sync",
        );
    });

    step(`alice sends ${HISTORY} messages; /messages pages back through all of them in order`, async () => {
        const alice = users.alice.client;
        const bob = users.bob.client;
        const aliceId = users.alice.creds.user_id;
        const last = `history ${HISTORY}`;
        const bobGotLast = waitForMessage(bob, roomId, aliceId, last, 15_000);
        const aliceGotLast = waitForMessage(alice, roomId, aliceId, last, 15_000);
        for (let i = 1; i <= HISTORY; i++) {
            await alice.sendTextMessage(roomId, `history ${i}`);
            expectedBodies.push(`history ${i}`);
        }
        await Promise.all([bobGotLast, aliceGotLast]);

        // Every message arrived through bob's sync, in order.
        const bobTimeline = bob
            .getRoom(roomId)
            .getLiveTimeline()
            .getEvents()
            .filter((e) => e.getType() === EventType.RoomMessage)
            .map((e) => e.getContent().body);
        assert.deepEqual(bobTimeline, expectedBodies, "bob's live timeline");

        // Backward pagination from the live end reaches the room's creation.
        const events = await allEventsViaMessages(bob, roomId, 7);
        assert.equal(events[0]?.type, EventType.RoomCreate, "the oldest event is m.room.create");
        assert.deepEqual(bodies(events), expectedBodies, "bodies paginated via /messages");
        const ids = events.map((e) => e.event_id);
        assert.equal(new Set(ids).size, ids.length, "no event is returned twice across pages");

        aliceSavedSyncToken = alice.store.getSyncToken();
        assert.equal(typeof aliceSavedSyncToken, "string");
        bodiesBeforeRestart = expectedBodies.length;
    });

    step(
        "SIGTERM stops the daemon cleanly and promptly while a /sync long-poll is pending",
        { critical: false },
        async () => {
            // Alice closes her app; bob keeps his running across the restart,
            // so his /sync long-poll (timeout=30000) is in flight right now.
            users.alice.client.stopClient();
            await sleep(200);
            let stopped;
            try {
                stopped = await hearth.stop(15_000);
            } finally {
                // Whatever happened, the next steps need a running daemon.
                await hearth.start();
            }
            assert.equal(stopped.signal, null, `hearth exit: ${JSON.stringify(stopped)}`);
            assert.equal(stopped.code, 0, `hearth exit: ${JSON.stringify(stopped)}`);
            assert.ok(
                stopped.ms < 5000,
                `hearth took ${stopped.ms}ms to exit after SIGTERM; a pending /sync long-poll should be cut off, ` +
                    `not waited for`,
            );
        },
    );

    step("after the restart alice logs in again; room, alias, members and history are intact", async () => {
        if (!hearth.proc || hearth.proc.exitCode !== null) await hearth.start();
        const aliceId = users.alice.creds.user_id;
        const bobId = users.bob.creds.user_id;

        const creds = await passwordLogin(hearth.baseUrl, "alice", PASSWORD.alice);
        assert.equal(creds.user_id, aliceId);
        assert.notEqual(creds.device_id, users.alice.creds.device_id, "password login creates a new device");
        alice2 = clientFor(hearth.baseUrl, creds);

        assert.ok((await alice2.getJoinedRooms()).joined_rooms.includes(roomId), "alice is still in the room");
        assert.equal((await alice2.getRoomIdForAlias(alias)).room_id, roomId, "the alias still resolves");
        const nameEv = await alice2.getStateEvent(roomId, EventType.RoomName, "");
        assert.equal(nameEv.name, roomName);
        const members = (await alice2.getJoinedRoomMembers(roomId)).joined;
        assert.deepEqual(Object.keys(members).sort(), [aliceId, bobId].sort(), "joined members");

        const events = await allEventsViaMessages(alice2, roomId, 10);
        assert.equal(events[0]?.type, EventType.RoomCreate);
        assert.deepEqual(bodies(events), expectedBodies, "bodies paginated via /messages after the restart");
    });

    step("access tokens issued before the restart still work", async () => {
        for (const name of ["alice", "bob"]) {
            const { creds } = users[name];
            const c = clientFor(hearth.baseUrl, creds);
            const who = await c.whoami();
            assert.equal(who.user_id, creds.user_id);
            assert.equal(who.device_id, creds.device_id);
        }
    });

    step("bob's SDK sync loop resumes with its pre-restart token and receives new messages", async () => {
        const bob = users.bob.client;
        const aliceId = users.alice.creds.user_id;
        const bobId = users.bob.creds.user_id;
        // retryImmediately is what apps call when the network comes back; it
        // just skips the SDK's 2-7 s keepalive backoff.
        bob.retryImmediately();
        const bobGot = waitForMessage(bob, roomId, aliceId, "after restart", 20_000);
        await alice2.sendTextMessage(roomId, "after restart");
        expectedBodies.push("after restart");
        await bobGot;
        await bob.sendTextMessage(roomId, "bob after restart");
        expectedBodies.push("bob after restart");
        const bobTimeline = bob
            .getRoom(roomId)
            .getLiveTimeline()
            .getEvents()
            .filter((e) => e.getType() === EventType.RoomMessage)
            .map((e) => e.getContent().body);
        assert.deepEqual(bobTimeline, expectedBodies, "bob's live timeline has no gap or duplicate");
        assert.equal(bob.getRoom(roomId).getMember(bobId)?.membership, "join");
    });

    step("an incremental /sync from a since token saved before the restart returns what came after", async () => {
        // The same device that obtained the token, as an app would after a relaunch.
        const oldAlice = clientFor(hearth.baseUrl, users.alice.creds);
        const sync = await withTimeout(
            oldAlice.http.authedRequest(Method.Get, "/sync", { since: aliceSavedSyncToken, timeout: "0" }),
            10_000,
            "incremental /sync with a pre-restart token",
        );
        assert.equal(typeof sync.next_batch, "string");
        assert.notEqual(sync.next_batch, aliceSavedSyncToken);
        const joinedRoom = sync.rooms?.join?.[roomId];
        assert.ok(joinedRoom, `the room is in rooms.join: ${JSON.stringify(sync.rooms)}`);
        assert.deepEqual(
            bodies(joinedRoom.timeline.events),
            expectedBodies.slice(bodiesBeforeRestart),
            "the incremental timeline holds exactly the messages sent after the token",
        );
    });

    step("a fresh SDK sync with a small window scrolls back to the room's creation", async () => {
        const bobId = users.bob.creds.user_id;
        await startAndWaitPrepared(alice2, { initialSyncLimit: 5 });
        const room = alice2.getRoom(roomId);
        assert.ok(room, "alice's fresh sync has the room");
        assert.equal(room.name, roomName);
        assert.equal(room.getMember(bobId)?.membership, "join");
        const live = room.getLiveTimeline();
        assert.ok(live.getEvents().length <= 5, "initialSyncLimit=5 is honoured");
        for (let i = 0; i < 50 && live.getPaginationToken(Direction.Backward) !== null; i++) {
            await withTimeout(alice2.scrollback(room, 10), 5000, `scrollback ${i}`);
        }
        const events = live.getEvents();
        assert.equal(events[0].getType(), EventType.RoomCreate, "scrollback reaches m.room.create");
        assert.deepEqual(
            events.filter((e) => e.getType() === EventType.RoomMessage).map((e) => e.getContent().body),
            expectedBodies,
            "bodies after scrollback",
        );
        const ids = events.map((e) => e.getId());
        assert.equal(new Set(ids).size, ids.length, "no duplicate events in the timeline");
    });
});
