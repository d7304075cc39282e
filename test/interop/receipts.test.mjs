// Read receipts as Element sends them with matrix-js-sdk and thread
// support on: the SDK works out each receipt's thread_id itself
// (threadIdForReceipt), so a reaction to a message in a thread is read
// under that thread's root, which the server must accept as related to it
// (receipts.yaml). And one person with two devices: the laptop, behind
// the phone, sends a receipt for an older message; the server keeps the
// phone's newer one, so nothing the phone read becomes unread again.
// alice, whose client is not under test, sends by plain HTTP.
//
// Run with the other interop tests: `make test-interop`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { ClientEvent, SyncState, createClient } from "matrix-js-sdk";
import { Hearth, freePort, withTimeout } from "./hearth.mjs";
import { quietLogger, until } from "./sdk.mjs";

let hearth, dataDir;
const clients = [];
const receiptBodies = []; // the bodies of every POST …/receipt/… the clients sent
let alice, phone, laptop; // alice: credentials (she sends by plain HTTP); bob's phone and laptop: SDK clients

before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "hearth-receipts-"));
    hearth = new Hearth(dataDir, await freePort());
    await hearth.start();
    alice = await account("alice", "register");
    phone = await started(await account("bob", "register"));
    laptop = await started(await account("bob", "login"));
});

/** alice's request to the client API, its answer's JSON. */
let txn = 0;
async function asAlice(method, apiPath, body) {
    const res = await fetch(`${hearth.baseUrl}/_matrix/client/v3/${apiPath}`, {
        method, headers: { Authorization: `Bearer ${alice.access_token}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
    });
    assert.equal(res.status, 200, `alice: ${method} ${apiPath}`);
    return res.json();
}

/** alice sends an event into roomId and returns its ID. */
async function send(roomId, type, content) {
    const { event_id: id } = await asAlice("PUT", `rooms/${encodeURIComponent(roomId)}/send/${type}/t${++txn}`, content);
    return id;
}

/** A room of alice's that bob has joined, as both his devices see it. */
async function newRoom() {
    const { room_id: roomId } = await asAlice("POST", "createRoom", { preset: "public_chat" });
    await phone.joinRoom(roomId);
    await until(() => laptop.getRoom(roomId)?.getMyMembership() === "join", 10_000, "bob's laptop to see the room");
    return roomId;
}

after(async () => {
    for (const c of clients) c.stopClient();
    await hearth?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Registers `name`, or logs in as them (a new device), and returns the credentials. */
async function account(name, how) {
    const body = how === "register"
        ? { username: name, password: `${name}-pw-123456`, auth: { type: "m.login.dummy" } }
        : { type: "m.login.password", identifier: { type: "m.id.user", user: name }, password: `${name}-pw-123456` };
    const res = await fetch(`${hearth.baseUrl}/_matrix/client/v3/${how}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    assert.equal(res.status, 200, `${how} ${name}`);
    return res.json();
}

/** A client with thread support, as Element starts it, once its first sync is done. */
async function started(creds) {
    const fetchFn = async (url, init) => {
        if (init?.method === "POST" && new URL(url).pathname.includes("/receipt/")) receiptBodies.push(JSON.parse(init.body));
        return fetch(url, init);
    };
    const client = createClient({ baseUrl: hearth.baseUrl, userId: creds.user_id, accessToken: creds.access_token,
        deviceId: creds.device_id, fetchFn, logger: quietLogger });
    clients.push(client);
    const ready = new Promise((resolve) => {
        const onSync = (state) => {
            if (state === SyncState.Prepared || state === SyncState.Error) {
                client.off(ClientEvent.Sync, onSync);
                resolve(state);
            }
        };
        client.on(ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: 20, threadSupport: true });
    assert.equal(await withTimeout(ready, 20_000, `${creds.user_id}'s first sync`), SyncState.Prepared);
    return client;
}

/** The event as `client` holds it, once its sync has brought it. */
async function eventAt(client, roomId, eventId) {
    let ev;
    await until(() => (ev = client.getRoom(roomId)?.findEventById(eventId)) !== undefined, 10_000,
        `${client.getUserId()} to receive ${eventId}`);
    return ev;
}

/** A fresh /sync with this access token, as the server answers it. */
async function rawSync(token) {
    const res = await fetch(`${hearth.baseUrl}/_matrix/client/v3/sync`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    return res.json();
}

test("a reaction in a thread is read under the thread's root, as the SDK sends it", async () => {
    const roomId = await newRoom();
    const root = await send(roomId, "m.room.message", { msgtype: "m.text", body: "where shall we eat?" });
    const reply = await send(roomId, "m.room.message", {
        msgtype: "m.text", body: "the place by the harbour", "m.relates_to": { rel_type: "m.thread", event_id: root },
    });
    const reaction = await send(roomId, "m.reaction", {
        "m.relates_to": { rel_type: "m.annotation", event_id: reply, key: "👍" },
    });
    const ev = await eventAt(phone, roomId, reaction);
    await until(() => ev.threadRootId === root, 10_000, "the SDK to place the reaction in the thread");

    const sent = receiptBodies.length;
    await withTimeout(phone.sendReadReceipt(ev), 10_000, "bob reads the thread up to the reaction");
    assert.equal(receiptBodies[sent]?.thread_id, root, "the SDK names the thread's root");
    const receipts = (await rawSync(alice.access_token)).rooms.join[roomId].ephemeral.events.filter((e) => e.type === "m.receipt");
    const bobs = receipts.map((e) => e.content[reaction]?.["m.read"]?.[phone.getUserId()]).find(Boolean);
    assert.equal(bobs?.thread_id, root, `alice sees bob's receipt on the reaction in the thread: ${JSON.stringify(receipts)}`);
});

test("a late receipt from another device does not make read messages unread", async () => {
    const roomId = await newRoom();
    const first = await send(roomId, "m.room.message", { msgtype: "m.text", body: "first" });
    const second = await send(roomId, "m.room.message", { msgtype: "m.text", body: "second" });
    const unread = async () => (await rawSync(phone.getAccessToken())).rooms.join[roomId]?.unread_notifications?.notification_count;
    await withTimeout(phone.sendReadReceipt(await eventAt(phone, roomId, second)), 10_000, "the phone reads both");
    assert.equal(await unread(), 0, "nothing unread after the phone's receipt");

    await withTimeout(laptop.sendReadReceipt(await eventAt(laptop, roomId, first)), 10_000, "the laptop's late receipt");
    assert.equal(await unread(), 0, "the laptop's older receipt made messages unread again");
    const receipts = (await rawSync(alice.access_token)).rooms.join[roomId].ephemeral.events.filter((e) => e.type === "m.receipt");
    const on = (id) => receipts.some((e) => e.content[id]?.["m.read"]?.[phone.getUserId()]);
    assert.ok(on(second) && !on(first), `alice sees bob's receipt on "second" still: ${JSON.stringify(receipts)}`);
});
