// Interop test over federation: a direct message to a user of another
// server, started and answered the way Element does it, with matrix-js-sdk
// and its Rust crypto on two hearth daemons federating over loopback TLS
// (startFederation in hearth.mjs).
//
// alice@hs1 creates the DM (is_direct, trusted_private_chat, encrypted from
// the start, bob invited) and records it in her m.direct account data.
// bob@hs2's running sync loop receives the invite: its stripped state must
// tell his client that the room is encrypted, who invited him, and that it
// is a DM (is_direct on his invite), or Element shows a plain room invite
// from nobody. bob joins by room ID (no via: Element has none for an
// invite) and, without a reload, both send encrypted messages the other
// decrypts. alice sees bob go from invite to join, and his display name on
// the invite before he ever joins.
//
// Once in the room version hearth creates by default, once in room v12,
// whose room IDs name no server: there the invite is the only way bob's
// server knows where to join.
//
// Run with the other interop tests: `make test-interop`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { MatrixEventEvent } from "matrix-js-sdk";
import { startFederation, withTimeout } from "./hearth.mjs";
import { cryptoClient, until } from "./sdk.mjs";

let federation;
const clients = [];
let alice, bob, bobSyncs, aliceId, bobId;
const BOB_NAME = "Bob of the Other Server";

before(async () => {
    federation = await startFederation(["hs1.test", "hs2.test"]);
    const { servers } = federation;
    ({ client: alice } = await cryptoClient(servers["hs1.test"].baseUrl, "alice", clients));
    ({ client: bob, syncs: bobSyncs } = await cryptoClient(servers["hs2.test"].baseUrl, "bob", clients));
    aliceId = alice.getUserId();
    bobId = bob.getUserId();
    await alice.setDisplayName("Alice");
    await bob.setDisplayName(BOB_NAME);
});

after(async () => {
    for (const c of clients) c.stopClient();
    await federation?.stop();
});

/** Adds roomId to the user's DMs with `other` in m.direct, as Element does, and waits for the sync to show it. */
async function recordDM(client, other, roomId) {
    const direct = { ...(client.getAccountData("m.direct")?.getContent() ?? {}) };
    direct[other] = [...(direct[other] ?? []), roomId];
    await client.setAccountData("m.direct", direct);
    await until(() => client.getAccountData("m.direct")?.getContent()?.[other]?.includes(roomId), 10_000,
        `${client.getUserId()}'s m.direct to list ${roomId}`);
}

/** Resolves with the first event of `client` that decrypts to an m.room.message from `sender` in `roomId`. */
function nextDecrypted(client, roomId, sender) {
    return new Promise((resolve) => {
        const onDecrypted = (ev) => {
            if (ev.getRoomId() === roomId && ev.getSender() === sender && ev.getType() === "m.room.message") {
                client.off(MatrixEventEvent.Decrypted, onDecrypted);
                resolve(ev);
            }
        };
        client.on(MatrixEventEvent.Decrypted, onDecrypted);
    });
}

async function directMessage(roomVersion) {
    const syncsBefore = bobSyncs.length;
    const { room_id: roomId } = await withTimeout(alice.createRoom({
        is_direct: true,
        invite: [bobId],
        preset: "trusted_private_chat",
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
        ...(roomVersion ? { room_version: roomVersion } : {}),
    }), 30_000, "alice creates the DM, inviting bob over federation");
    await recordDM(alice, bobId, roomId);

    // alice's view: bob invited, under the display name hs2 gives him.
    await until(() => alice.getRoom(roomId)?.getMember(bobId)?.membership === "invite", 10_000, "alice to see bob invited");
    const invite = alice.getRoom(roomId).getMember(bobId).events.member;
    assert.equal(invite.getContent().displayname, BOB_NAME, "the invite carries the invitee's display name");
    assert.equal(invite.getContent().is_direct, true);
    assert.equal(alice.getRoom(roomId).getMember(bobId).name, BOB_NAME, "alice's client names the invitee");

    // bob's view: the invite, by the sync loop that is already running.
    await until(() => bob.getRoom(roomId)?.getMyMembership() === "invite", 20_000, "bob's client to see the invite");
    const inviteSync = bobSyncs.slice(syncsBefore).find((s) => s.rooms?.invite?.[roomId]);
    assert.ok(inviteSync, "the invite came in bob's /sync");
    const stripped = inviteSync.rooms.invite[roomId].invite_state.events;
    const find = (type, key) => stripped.find((e) => e.type === type && e.state_key === key);
    assert.equal(find("m.room.encryption", "")?.content?.algorithm, "m.megolm.v1.aes-sha2",
        `the invite's stripped state lacks the room's encryption: ${JSON.stringify(stripped)}`);
    assert.equal(find("m.room.member", aliceId)?.content?.membership, "join",
        `the invite's stripped state lacks the inviter's membership: ${JSON.stringify(stripped)}`);
    const own = find("m.room.member", bobId);
    assert.equal(own?.content?.membership, "invite");
    assert.equal(own?.sender, aliceId);
    assert.equal(own?.content?.is_direct, true, "bob's invite says it is a DM");
    assert.ok(find("m.room.create", ""), "the invite's stripped state has the create event");
    const bobRoom = bob.getRoom(roomId);
    assert.equal(bobRoom.getDMInviter(), aliceId, "bob's client takes the invite for a DM from alice");
    assert.equal(bobRoom.getMember(aliceId)?.name, "Alice", "bob's client names the inviter");

    // bob accepts, by room ID only, as Element does for an invite.
    const joined = await withTimeout(bob.joinRoom(roomId), 30_000, "bob joins the DM over federation");
    assert.equal(joined.roomId, roomId);
    await recordDM(bob, aliceId, roomId);
    await until(() => bob.getRoom(roomId)?.getMyMembership() === "join", 20_000, "bob's client to see the room joined");
    assert.equal(await bob.getCrypto().isEncryptionEnabledInRoom(roomId), true, "bob's client knows the DM is encrypted");

    // alice's view: bob went from invite to join.
    await until(() => alice.getRoom(roomId)?.getMember(bobId)?.membership === "join", 20_000, "alice to see bob join");
    const bobMemberships = alice.getRoom(roomId).getLiveTimeline().getEvents()
        .filter((e) => e.getType() === "m.room.member" && e.getStateKey() === bobId)
        .map((e) => e.getContent().membership);
    assert.deepEqual(bobMemberships, ["invite", "join"], "bob's memberships in alice's timeline");
    assert.equal(alice.getRoom(roomId).getMember(bobId).name, BOB_NAME);

    // Encrypted both ways, each decrypted by the other side.
    const toBob = nextDecrypted(bob, roomId, aliceId);
    await withTimeout(alice.sendTextMessage(roomId, "hi bob, this is just between us"), 30_000, "alice sends in the DM");
    const atBob = await withTimeout(toBob, 30_000, "bob to decrypt alice's message");
    assert.equal(atBob.getWireType(), "m.room.encrypted", "alice's message travelled encrypted");
    assert.equal(atBob.isDecryptionFailure(), false);
    assert.equal(atBob.getContent().body, "hi bob, this is just between us");

    const toAlice = nextDecrypted(alice, roomId, bobId);
    await withTimeout(bob.sendTextMessage(roomId, "hi alice, loud and clear"), 30_000, "bob answers in the DM");
    const atAlice = await withTimeout(toAlice, 30_000, "alice to decrypt bob's message");
    assert.equal(atAlice.getWireType(), "m.room.encrypted", "bob's message travelled encrypted");
    assert.equal(atAlice.isDecryptionFailure(), false);
    assert.equal(atAlice.getContent().body, "hi alice, loud and clear");
    return roomId;
}

test("matrix-js-sdk over federation: a DM to a user of another server, invite to encrypted replies", { timeout: 180_000 }, async () => {
    await directMessage();
});

test("matrix-js-sdk over federation: a DM in room v12, whose room ID names no server", { timeout: 180_000 }, async () => {
    const roomId = await directMessage("12");
    assert.ok(!roomId.includes(":"), `a room v12 ID names no server: ${roomId}`);
});
