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
import { MatrixEventEvent } from "matrix-js-sdk";
import { startFederation, withTimeout } from "./hearth.mjs";
import { cryptoClient, until } from "./sdk.mjs";

let federation;
const clients = [];

after(async () => {
    for (const c of clients) c.stopClient();
    await federation?.stop();
});

test("matrix-js-sdk over federation: a user of another server joins an encrypted room and talks in it without a reload", { timeout: 120_000 }, async () => {
    federation ??= await startFederation(["hs1.test", "hs2.test"]);
    const { servers } = federation;
    const { client: alice } = await cryptoClient(servers["hs1.test"].baseUrl, "alice", clients);
    const { client: bob, syncs: bobSyncs } = await cryptoClient(servers["hs2.test"].baseUrl, "bob", clients);
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
    // matrix-js-sdk asks for org.matrix.msc4222.state_after (MSC4222),
    // which replaces state and already holds the state at the timeline's end.
    const state = first["org.matrix.msc4222.state_after"]
        ? first["org.matrix.msc4222.state_after"].events
        : [...(first.state?.events ?? []), ...(first.timeline?.events ?? [])];
    assert.equal(first.state, undefined, "the sdk asked for state_after, yet the room has a state section");
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

// A room preview the way Element shows one before joining (the SDK's
// getRoomSummary, MSC3266's unstable path): bob@hs2 previews alice's
// public room on hs1 by its alias and by its ID with via, which hs2 asks
// hs1 for over federation, and gets nothing of her private room.
test("matrix-js-sdk over federation: a room summary of another server's room", { timeout: 60_000 }, async () => {
    federation ??= await startFederation(["hs1.test", "hs2.test"]);
    const { servers } = federation;
    const { client: alice } = await cryptoClient(servers["hs1.test"].baseUrl, "anna", clients);
    const { client: bob } = await cryptoClient(servers["hs2.test"].baseUrl, "ben", clients);
    const { room_id: roomId } = await alice.createRoom({
        name: "The harbour", topic: "boats", preset: "public_chat", room_alias_name: "harbour",
    });
    for (const [target, via] of [["#harbour:hs1.test", undefined], [roomId, ["hs1.test"]]]) {
        const summary = await bob.getRoomSummary(target, via);
        assert.equal(summary.room_id, roomId, `summary of ${target}`);
        assert.equal(summary.name, "The harbour");
        assert.equal(summary.topic, "boats");
        assert.equal(summary.join_rule, "public");
        assert.equal(summary.num_joined_members, 1);
    }
    const { room_id: hidden } = await alice.createRoom({ name: "Private", preset: "private_chat" });
    await assert.rejects(bob.getRoomSummary(hidden, ["hs1.test"]), (e) => e.errcode === "M_NOT_FOUND",
        "a private room of another server is not previewed");
});
