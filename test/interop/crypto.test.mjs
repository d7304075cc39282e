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
import os from "node:os";
import path from "node:path";
import { MatrixEventEvent } from "matrix-js-sdk";
import { Hearth, freePort, withTimeout } from "./hearth.mjs";
import { cryptoClient, until } from "./sdk.mjs";

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

test("matrix-js-sdk with Rust crypto: an encrypted message is decrypted by the other user", { timeout: 60_000 }, async () => {
    const { client: carol } = await cryptoClient(baseUrl, "carol", clients);
    const { client: dave } = await cryptoClient(baseUrl, "dave", clients);
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
