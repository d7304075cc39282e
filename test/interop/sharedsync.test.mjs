// The long polls one message wakes share one response, each with its own
// unread and key counts (localapi/matrix/sync_shared.go). Here three
// matrix-js-sdk clients with Rust crypto, started as Element starts them,
// long-poll one room while one of them sends: each must get every
// message once, the sender's own echoes must resolve its local echoes,
// and each must get its own unread count (carol has read more than bob).
//
// Run with the other interop tests: `make test-interop`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Hearth, freePort } from "./hearth.mjs";
import { cryptoClient, until } from "./sdk.mjs";

let hearth, dataDir;
const clients = [];
let alice, bob, carol, roomId;
let bobSyncs, carolSyncs;
const ids = []; // the messages of the first test, sent after carol's receipt

before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "hearth-sharedsync-"));
    hearth = new Hearth(dataDir, await freePort());
    await hearth.start();
    ({ client: alice } = await cryptoClient(hearth.baseUrl, "alice", clients));
    ({ client: bob, syncs: bobSyncs } = await cryptoClient(hearth.baseUrl, "bob", clients));
    ({ client: carol, syncs: carolSyncs } = await cryptoClient(hearth.baseUrl, "carol", clients));
    ({ room_id: roomId } = await alice.createRoom({ preset: "public_chat" }));
    await bob.joinRoom(roomId);
    await carol.joinRoom(roomId);
    const { event_id: first } = await alice.sendTextMessage(roomId, "first");
    await until(() => carol.getRoom(roomId)?.findEventById(first), 10_000, "carol's client to receive the first message");
    await carol.sendReadReceipt(carol.getRoom(roomId).findEventById(first));
    await until(() => carol.getRoom(roomId)?.getUnreadNotificationCount("total") === 0, 10_000, "carol's count to clear");
    await until(() => bob.getRoom(roomId)?.getUnreadNotificationCount("total") === 1, 10_000, "bob's count of the first message");
});

after(async () => {
    for (const c of clients) c.stopClient();
    await hearth?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const N = 8;

test("every long-polling client gets each message once, with its own unread count", async () => {
    for (let i = 0; i < N; i++) {
        const { event_id: id } = await alice.sendTextMessage(roomId, `message ${i}`);
        ids.push(id);
    }
    for (const [name, c] of [["bob", bob], ["carol", carol]]) {
        await until(() => ids.every((id) => c.getRoom(roomId)?.findEventById(id)), 10_000, `${name}'s client to receive all ${N}`);
        const timeline = c.getRoom(roomId).getLiveTimeline().getEvents().map((e) => e.getId());
        for (const id of ids) assert.equal(timeline.filter((x) => x === id).length, 1, `${name} holds ${id} once`);
    }
    await until(() => bob.getRoom(roomId).getUnreadNotificationCount("total") === N + 1, 10_000, `bob's count to reach ${N + 1}`);
    await until(() => carol.getRoom(roomId).getUnreadNotificationCount("total") === N, 10_000, `carol's count to reach ${N}`);
    // The sender's client matched each remote echo to its local one: every
    // message once, none left pending.
    const mine = alice.getRoom(roomId).getLiveTimeline().getEvents().filter((e) => e.getSender() === alice.getUserId() &&
        e.getType() === "m.room.message");
    assert.equal(mine.length, N + 1, "alice's timeline holds her messages once each");
    assert.ok(mine.every((e) => e.status === null), "none of alice's messages is still pending");
    assert.equal(alice.getRoom(roomId).getUnreadNotificationCount("total"), 0, "alice's own messages are not counted for her");
});

test("a response both readers got for the same span differs only in their counts", async () => {
    // Responses carrying a message, by the span (since → next_batch) the
    // SDK asked for: the previous response's next_batch.
    const bySpan = (syncs) => {
        const out = new Map();
        for (let i = 1; i < syncs.length; i++) {
            const room = syncs[i].rooms?.join?.[roomId];
            if (room?.timeline?.events?.some((e) => ids.includes(e.event_id))) {
                out.set(`${syncs[i - 1].next_batch}→${syncs[i].next_batch}`, room);
            }
        }
        return out;
    };
    const strip = (room) => JSON.stringify({ ...room, unread_notifications: undefined,
        timeline: { ...room.timeline, events: room.timeline.events.map((e) => ({ ...e, unsigned: { ...e.unsigned, age: 0 } })) } });
    const bobs = bySpan(bobSyncs), carols = bySpan(carolSyncs);
    let same = 0;
    for (const [span, room] of bobs) {
        const other = carols.get(span);
        if (!other) continue;
        same++;
        assert.equal(strip(room), strip(other), `the room's section for span ${span}`);
        assert.notDeepEqual(room.unread_notifications, other.unread_notifications, `their counts for span ${span}`);
    }
    assert.ok(same > 0, "bob and carol were answered for at least one same span");
});
