// Interop test for end-to-end encryption: two matrix-js-sdk clients with
// the Rust crypto stack (@matrix-org/matrix-sdk-crypto-wasm, the version
// matrix-js-sdk 36.2.0 depends on) against a real `hearth`. One sends an
// encrypted message; the other decrypts it. Hearth only stores and routes
// the keys and to-device messages; all cryptography is the SDK's.
//
// Run with the other interop tests: `make test-interop`.

import { test } from "node:test";
import assert from "node:assert/strict";
import { MatrixEventEvent } from "matrix-js-sdk";
import { daemonForFile, withTimeout } from "./hearth.mjs";
import { cryptoClient, until } from "./sdk.mjs";

const env = daemonForFile("crypto");

test("matrix-js-sdk with Rust crypto: an encrypted message is decrypted by the other user", { timeout: 60_000 }, async () => {
    const { client: carol } = await cryptoClient(env.baseUrl, "carol", env.clients);
    const { client: dave } = await cryptoClient(env.baseUrl, "dave", env.clients);
    const daveId = dave.getUserId();

    const { room_id: roomId } = await carol.createRoom({
        invite: [daveId],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    // Dave joins once the invite reaches him; carol waits to see the join,
    // so that her client shares the room key with his device.
    await until(() => dave.getRoom(roomId), 10_000, "dave to see the invite");
    await dave.joinRoom(roomId);
    await until(() => carol.getRoom(roomId)?.getMember(daveId)?.membership === "join", 10_000, "carol to see dave join");

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
