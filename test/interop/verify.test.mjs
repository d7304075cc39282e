// Interop test over federation: verifying another person, the way Element
// does it, with matrix-js-sdk and its Rust crypto on two hearth daemons
// federating over loopback TLS (startFederation in hearth.mjs).
//
// alice@hs1 and bob@hs2 each set up cross-signing (bootstrapCrossSigning,
// as Element does at first sign-in) and share an encrypted DM. alice asks
// to verify bob in the DM (requestVerificationDM: an
// m.key.verification.request message in the DM, and every later step an
// event there that relates to it; the SDK sends them in the clear), bob
// accepts, alice starts SAS, both clients show the same emojis and
// numbers, both people confirm, and the verification ends done on both
// sides. Then each client counts the other person as verified: alice's
// user-signing key has signed bob's master key and bob's has signed
// alice's (getUserVerificationStatus), so each trusts the other's device
// through cross-signing; and each server hands its user back that
// signature in /keys/query.
//
// Element's client labels the request's JSON text/plain: hearth refused it
// with M_NOT_JSON until issue 11 (localapi/matrix/server.go,
// TestAuthorizedJSONLabelledTextPlain).
//
// What the servers must do for it: carry every in-room verification event
// to the other side once and unchanged (a dropped one stalls the flow, a
// changed one breaks the SAS commitment or the MACs and the SDK cancels),
// answer /keys/query for the other server's user with their
// cross-signing keys, and keep the signature a user uploads for another
// user's master key.
//
// Run with the other interop tests: `make test-interop`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Crypto } from "matrix-js-sdk";
import { sleep, startFederation, withTimeout } from "./hearth.mjs";
import { cryptoClient, until } from "./sdk.mjs";

const { CryptoEvent, VerificationPhase, VerifierEvent } = Crypto;

let federation;
const clients = [];
let alice, bob, aliceId, bobId;

before(async () => {
    federation = await startFederation(["hs1.test", "hs2.test"]);
    const { servers } = federation;
    ({ client: alice } = await cryptoClient(servers["hs1.test"].baseUrl, "alice", clients));
    ({ client: bob } = await cryptoClient(servers["hs2.test"].baseUrl, "bob", clients));
    aliceId = alice.getUserId();
    bobId = bob.getUserId();
});

after(async () => {
    for (const c of clients) c.stopClient();
    await federation?.stop();
});

/**
 * Sets up cross-signing for the client's user, as Element does at first
 * sign-in. The first upload of a user's cross-signing keys needs no
 * interactive auth on hearth (as on Synapse); should it ask, the password
 * answers.
 */
async function setUpCrossSigning(client, name) {
    await withTimeout(client.getCrypto().bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            try {
                await makeRequest(null);
            } catch (err) {
                if (err.httpStatus !== 401 || !err.data?.session) throw err;
                await makeRequest({
                    type: "m.login.password",
                    identifier: { type: "m.id.user", user: client.getUserId() },
                    password: `${name}-pw-123456`,
                    session: err.data.session,
                });
            }
        },
    }), 30_000, `${name}: bootstrapCrossSigning`);
    assert.equal(await client.getCrypto().isCrossSigningReady(), true, `${name}'s cross-signing is ready`);
}

/** The encrypted DM alice opens with bob, as in dm.test.mjs, once both are in. */
async function openDM() {
    const { room_id: roomId } = await withTimeout(alice.createRoom({
        is_direct: true,
        invite: [bobId],
        preset: "trusted_private_chat",
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    }), 30_000, "alice creates the DM, inviting bob over federation");
    await until(() => bob.getRoom(roomId)?.getMyMembership() === "invite", 20_000, "bob's client to see the invite");
    await withTimeout(bob.joinRoom(roomId), 30_000, "bob joins the DM over federation");
    await until(() => alice.getRoom(roomId)?.getMember(bobId)?.membership === "join", 20_000, "alice to see bob join");
    await until(() => bob.getRoom(roomId)?.getMyMembership() === "join", 20_000, "bob's client to see the room joined");
    return roomId;
}

/** Resolves when `request` reaches `phase`; rejects if it is cancelled first. */
function reachPhase(request, phase, what) {
    return withTimeout(new Promise((resolve, reject) => {
        const check = () => {
            if (request.phase === phase) {
                request.off("change", check);
                resolve();
            } else if (request.phase === VerificationPhase.Cancelled) {
                request.off("change", check);
                reject(new Error(`${what}: cancelled (${request.cancellationCode}) by ${request.cancellingUserId}`));
            }
        };
        request.on("change", check);
        check();
    }), 30_000, what);
}

/** Resolves with the SAS callbacks once `verifier` shows the emojis. */
function sasShown(verifier, what) {
    return withTimeout(new Promise((resolve, reject) => {
        const shown = verifier.getShowSasCallbacks();
        if (shown) return resolve(shown);
        verifier.once(VerifierEvent.ShowSas, resolve);
        verifier.once(VerifierEvent.Cancel, (e) => reject(new Error(`${what}: cancelled: ${e?.message ?? e?.getContent?.()?.code}`)));
    }), 30_000, what);
}

/** The signatures `viewer`'s server attaches to `user`'s master key in /keys/query. */
async function masterKeySignatures(viewer, user) {
    const res = await viewer.http.authedRequest("POST", "/keys/query", undefined, { device_keys: { [user]: [] } });
    return res.master_keys?.[user]?.signatures ?? {};
}

test("matrix-js-sdk over federation: alice verifies bob in their DM with emojis (SAS), as Element does", { timeout: 240_000 }, async () => {
    await setUpCrossSigning(alice, "alice");
    await setUpCrossSigning(bob, "bob");
    const roomId = await openDM();
    assert.equal((await alice.getCrypto().getUserVerificationStatus(bobId)).isCrossSigningVerified(), false,
        "bob is not verified before the verification");

    // alice asks in the DM; bob's client shows the request and he accepts.
    const received = new Promise((resolve) => bob.once(CryptoEvent.VerificationRequestReceived, resolve));
    const aliceRequest = await withTimeout(alice.getCrypto().requestVerificationDM(bobId, roomId), 30_000,
        "alice requests verification of bob in the DM");
    const bobRequest = await withTimeout(received, 30_000, "bob's client to receive alice's verification request");
    assert.equal(bobRequest.roomId, roomId, "the request came in the DM");
    assert.equal(bobRequest.otherUserId, aliceId);
    assert.equal(bobRequest.initiatedByMe, false);
    assert.equal(bobRequest.transactionId, aliceRequest.transactionId, "both see the same request event");
    const requestEvent = bob.getRoom(roomId).findEventById(bobRequest.transactionId);
    assert.equal(requestEvent?.getContent().msgtype, "m.key.verification.request", "the request is a message in the DM");
    assert.equal(requestEvent.getContent().to, bobId);
    assert.equal(requestEvent.getContent().from_device, alice.getDeviceId());
    await withTimeout(bobRequest.accept(), 30_000, "bob accepts");
    await reachPhase(aliceRequest, VerificationPhase.Ready, "alice's request to be accepted (ready)");

    // alice starts SAS; bob's client follows the start.
    const aliceVerifier = await withTimeout(aliceRequest.startVerification("m.sas.v1"), 30_000, "alice starts SAS");
    const aliceShows = sasShown(aliceVerifier, "the emojis on alice's screen");
    const aliceDone = aliceVerifier.verify();
    await reachPhase(bobRequest, VerificationPhase.Started, "bob's client to see alice's start");
    const bobVerifier = bobRequest.verifier;
    assert.ok(bobVerifier, "bob's client has a verifier for alice's start");
    const bobShows = sasShown(bobVerifier, "the emojis on bob's screen");
    const bobDone = bobVerifier.verify();

    // The two people compare what their screens show, then confirm.
    const [aliceSas, bobSas] = await Promise.all([aliceShows, bobShows]);
    assert.equal(aliceSas.sas.emoji?.length, 7, "alice's client shows seven emojis");
    assert.deepEqual(aliceSas.sas.emoji, bobSas.sas.emoji, "both see the same emojis");
    assert.deepEqual(aliceSas.sas.decimal, bobSas.sas.decimal, "both see the same numbers");
    await Promise.all([aliceSas.confirm(), bobSas.confirm()]);
    await withTimeout(Promise.all([aliceDone, bobDone]), 30_000, "both verifications to complete");
    await reachPhase(aliceRequest, VerificationPhase.Done, "alice's request done");
    await reachPhase(bobRequest, VerificationPhase.Done, "bob's request done");

    // Every step went through the DM, once, on both servers.
    const steps = [[bobId, "ready"], [aliceId, "start"], [bobId, "accept"], [aliceId, "key"], [bobId, "key"],
        [aliceId, "mac"], [bobId, "mac"], [aliceId, "done"], [bobId, "done"]]
        .map(([sender, step]) => `${sender} m.key.verification.${step}`).sort();
    for (const [c, name] of [[alice, "alice"], [bob, "bob"]]) {
        const seen = () => c.getRoom(roomId).getLiveTimeline().getEvents()
            .filter((e) => e.getType().startsWith("m.key.verification."))
            .map((e) => `${e.getSender()} ${e.getType()}`).sort();
        // Each side is done once it has sent its own done; the other's
        // may still be on its way.
        await until(() => seen().length >= steps.length, 20_000, `every verification event in ${name}'s DM`);
        assert.deepEqual(seen(), steps, `the verification events in ${name}'s DM`);
    }

    // Each now counts the other as verified through cross-signing: alice's
    // user-signing key signed bob's master key, and bob's signed alice's.
    for (const [viewer, other, name] of [[alice, bobId, "alice"], [bob, aliceId, "bob"]]) {
        // The client signs and uploads in the background after done.
        const deadline = Date.now() + 20_000;
        let status = await viewer.getCrypto().getUserVerificationStatus(other);
        while (!status.isCrossSigningVerified() && Date.now() < deadline) {
            await sleep(100);
            status = await viewer.getCrypto().getUserVerificationStatus(other);
        }
        assert.equal(status.isCrossSigningVerified(), true, `${name}'s client counts ${other} as verified by cross-signing`);
        assert.equal(status.isVerified(), true, `${name} counts ${other} as verified`);
        const otherDevice = (other === bobId ? bob : alice).getDeviceId();
        const device = await viewer.getCrypto().getDeviceVerificationStatus(other, otherDevice);
        assert.equal(device?.crossSigningVerified, true, `${name} trusts ${other}'s device through cross-signing`);
    }

    // The signatures are on the servers: each user's server hands back the
    // signature its user made of the other's master key.
    for (const [viewer, other, name] of [[alice, bobId, "alice"], [bob, aliceId, "bob"]]) {
        const usk = await viewer.getCrypto().getCrossSigningKeyId("user_signing");
        assert.ok(usk, `${name} has a user-signing key`);
        const sigs = await masterKeySignatures(viewer, other);
        assert.ok(sigs[viewer.getUserId()]?.[`ed25519:${usk}`],
            `${name}'s server lacks ${name}'s signature on ${other}'s master key: ${JSON.stringify(sigs)}`);
    }
});
