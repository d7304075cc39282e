// One person in many rooms, as an ordinary Element account is. Each
// incremental /sync skips the rooms where nothing happened since its token
// (internal/room quietJoined); whatever happens in any one of them must
// still reach matrix-js-sdk (with Rust crypto, as Element starts it): a
// message, a typing notice or a read receipt in a room with no new event,
// and a room's unread count, the quiet rooms' staying as they were.
//
// Run with the other interop tests: `make test-interop`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Hearth, freePort } from "./hearth.mjs";
import { cryptoClient, until } from "./sdk.mjs";

const ROOMS = 40;

let hearth, dataDir;
const clients = [];
let bob; // the SDK client under test
let alice, carol; // access tokens: their clients are not under test
const rooms = []; // alice's rooms, all joined by bob and carol
const first = []; // alice's first message in each room

before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "hearth-manyrooms-"));
    hearth = new Hearth(dataDir, await freePort());
    await hearth.start();
    alice = await register("alice");
    carol = await register("carol");
    const { client } = await cryptoClient(hearth.baseUrl, "bob", clients);
    bob = client;
    for (let i = 0; i < ROOMS; i++) {
        const { room_id: roomId } = await api(alice, "POST", "createRoom", { preset: "public_chat" });
        await api(carol, "POST", `join/${encodeURIComponent(roomId)}`, {});
        await api(bob.getAccessToken(), "POST", `join/${encodeURIComponent(roomId)}`, {});
        first.push(await send(roomId, `first ${i}`));
        rooms.push(roomId);
    }
    await until(() => rooms.every((id) => bob.getRoom(id)?.findEventById(first[rooms.indexOf(id)])), 30_000,
        `bob's client to hold all ${ROOMS} rooms and their first messages`);
});

after(async () => {
    for (const c of clients) c.stopClient();
    await hearth?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function register(name) {
    const res = await api(null, "POST", "register",
        { username: name, password: `${name}-pw-123456`, auth: { type: "m.login.dummy" } });
    return res.access_token;
}

/** A request to the client API with token, its answer's JSON. */
async function api(token, method, apiPath, body) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(`${hearth.baseUrl}/_matrix/client/v3/${apiPath}`, { method, headers, body: JSON.stringify(body) });
    assert.equal(res.status, 200, `${method} ${apiPath}`);
    return res.json();
}

let txn = 0;
/** alice sends a text message into roomId; its event ID. */
async function send(roomId, body) {
    const { event_id: id } = await api(alice, "PUT", `rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${++txn}`,
        { msgtype: "m.text", body });
    return id;
}

test("a message in one of many rooms reaches the SDK", async () => {
    const id = await send(rooms[17], "in the eighteenth room");
    await until(() => bob.getRoom(rooms[17])?.findEventById(id), 10_000, "bob's client to receive the message");
});

test("typing in a room with no new event reaches the SDK", async () => {
    const aliceId = bob.getRoom(rooms[5]).getCreator();
    await api(alice, "PUT", `rooms/${encodeURIComponent(rooms[5])}/typing/${encodeURIComponent(aliceId)}`,
        { typing: true, timeout: 20_000 });
    await until(() => bob.getRoom(rooms[5])?.getMember(aliceId)?.typing === true, 10_000, "bob's client to see alice typing");
});

test("a read receipt in a room with no new event reaches the SDK", async () => {
    const carolId = bob.getRoom(rooms[9]).getMembers().find((m) => m.userId.startsWith("@carol:")).userId;
    await api(carol, "POST", `rooms/${encodeURIComponent(rooms[9])}/receipt/m.read/${encodeURIComponent(first[9])}`, {});
    await until(() => bob.getRoom(rooms[9])?.getReadReceiptForUserId(carolId)?.eventId === first[9], 10_000,
        "bob's client to see carol's receipt");
});

test("a room's unread count moves with its message, the quiet rooms' stay", async () => {
    const count = (i) => bob.getRoom(rooms[i])?.getUnreadNotificationCount("total");
    const before = count(30);
    await send(rooms[30], "counted");
    await until(() => count(30) === before + 1, 10_000, `bob's unread count to go from ${before} to ${before + 1}`);
    for (const i of [29, 31]) {
        assert.equal(count(i), 1, `room ${i}'s count is its one unread message`);
    }
});
