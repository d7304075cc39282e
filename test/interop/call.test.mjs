// A 1:1 voice call between two Element-like peers through Hearth: two
// pages in one headless Chromium (the Debian chromium package, driven by
// playwright-core) with fake media devices, each running matrix-js-sdk's
// call support (call/page.mjs, bundled here with esbuild) against one
// daemon. alice calls bob in their DM; bob's SDK rings (Call.incoming)
// and he answers; media flows both ways through the daemon's built-in TURN
// relay. The test asserts that bob's remote audio track receives packets
// and decoded sound, and alice's too, over a relayed candidate pair; then
// alice hangs up, both ends see the call end, and the room holds the VoIP
// v1 signalling (m.call.invite, answer, select_answer, hangup). A second
// call bob declines: alice's SDK ends it as rejected by the other side, and
// the room holds m.call.invite and m.call.reject, no answer.
//
// Signalling is the VoIP events in the room (spec: Client-Server API,
// "Voice over IP"). The clients run with forceTURN, as Element does with
// "allow peer-to-peer" off: the SDK gives its peer connections
// iceTransportPolicy "relay" and the servers of
// GET /_matrix/client/v3/voip/turnServer, which it fetches on startClient,
// so no media moves unless the relay carries it. The relay listens on
// loopback and relays between loopback addresses only because the test
// allows it (turn_allow_networks = 127.0.0.0/8).
//
// On failure, a screenshot and the console of each page are kept in
// artifacts/ (call-alice.png, call-alice.log, ...), next to the daemon's log.
//
// Run with the other interop tests: `make test-interop`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { Hearth, freePort, sleep, withTimeout } from "./hearth.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const artifacts = path.join(here, "artifacts");

let hearth, dataDir, pageServer, browser, turnListen;
const peers = {}; // name -> { page, logs, user }
let roomId, alice, bob, alicePage, bobPage;

/** The page's bundle: call/page.mjs with matrix-js-sdk, built for the browser. */
async function bundle() {
    const out = await build({
        entryPoints: [path.join(here, "call/page.mjs")],
        bundle: true,
        format: "esm",
        platform: "browser",
        target: "chrome120",
        write: false,
        logLevel: "error",
    });
    return out.outputFiles[0].contents;
}

/** Serves the call page and its bundle on 127.0.0.1: a page origin of its own, as Element's is. */
async function servePage() {
    const [js, html] = await Promise.all([bundle(), readFile(path.join(here, "call/page.html"))]);
    const server = http.createServer((req, res) => {
        const { pathname } = new URL(req.url, "http://x");
        if (pathname === "/") {
            res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
            res.end(html);
        } else if (pathname === "/page.js") {
            res.writeHead(200, { "Content-Type": "text/javascript; charset=utf-8" });
            res.end(js);
        } else {
            res.writeHead(404);
            res.end();
        }
    });
    const port = await freePort();
    await new Promise((r) => server.listen(port, "127.0.0.1", r));
    server.origin = `http://127.0.0.1:${port}`;
    return server;
}

async function api(method, p, token, body) {
    const res = await fetch(hearth.baseUrl + p, {
        method,
        headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    assert.equal(res.status, 200, `${method} ${p}: HTTP ${res.status} ${JSON.stringify(json)}`);
    return json;
}

async function register(name) {
    return api("POST", "/_matrix/client/v3/register", null,
        { username: name, password: `${name}-pw-123456`, auth: { type: "m.login.dummy" } });
}

/** A page in a browser context of its own (its own storage, as another person's browser), signed in as `user`. */
async function openPeer(name, user) {
    const context = await browser.newContext();
    await context.grantPermissions(["microphone", "camera"], { origin: pageServer.origin });
    const page = await context.newPage();
    const logs = [];
    page.on("console", (m) => logs.push(`${new Date().toISOString()} ${m.type()} ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`${new Date().toISOString()} pageerror ${e.stack ?? e}`));
    peers[name] = { page, logs, user, context };
    await page.goto(`${pageServer.origin}/?log=debug`);
    await page.waitForSelector("body[data-ready=true]", { state: "attached", timeout: 10_000 });
    const started = await page.evaluate((opts) => window.hearthCall.start(opts), {
        baseUrl: hearth.baseUrl,
        userId: user.user_id,
        accessToken: user.access_token,
        deviceId: user.device_id,
        forceTURN: true,
    });
    assert.equal(started.supportsVoip, true, `${name}: the SDK does not support calls in this browser`);
    // The relay, as the SDK got it from /voip/turnServer on startClient.
    const servers = await page.evaluate(() => window.hearthCall.turnServers(10_000));
    assert.equal(servers.length, 1);
    assert.deepEqual([...servers[0].urls].sort(),
        [`turn:${turnListen}?transport=tcp`, `turn:${turnListen}?transport=udp`], `${name}'s TURN URIs`);
    assert.ok(servers[0].username && servers[0].credential, `${name} got no TURN credentials`);
    return page;
}

async function saveArtifacts() {
    await mkdir(artifacts, { recursive: true });
    for (const [name, { page, logs }] of Object.entries(peers)) {
        await page.screenshot({ path: path.join(artifacts, `call-${name}.png`) }).catch(() => {});
        await writeFile(path.join(artifacts, `call-${name}.log`), logs.join("\n") + "\n");
    }
}

before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "hearth-call-"));
    // The built-in relay on loopback, allowed to relay between loopback
    // addresses (it never does unless told: turn_allow_networks).
    turnListen = `127.0.0.1:${await freePort()}`;
    hearth = new Hearth(dataDir, await freePort(), {
        extraArgs: ["--turn", "on", "--turn-listen", turnListen, "--turn-allow-networks", "127.0.0.0/8"],
    });
    [pageServer] = await Promise.all([servePage(), hearth.start()]);
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic",
            // getUserMedia gets a generated tone, without asking anyone.
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            // Chromium leaves loopback interfaces out of WebRTC unless told.
            "--allow-loopback-in-peer-connection"],
    });
    try {
        [alice, bob] = await Promise.all([register("alice"), register("bob")]);
        // The DM, as Element makes one: bob invited at creation, then he joins.
        ({ room_id: roomId } = await api("POST", "/_matrix/client/v3/createRoom", alice.access_token,
            { preset: "trusted_private_chat", is_direct: true, invite: [bob.user_id] }));
        await api("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, bob.access_token, {});
        [alicePage, bobPage] = await Promise.all([openPeer("alice", alice), openPeer("bob", bob)]);
    } catch (err) {
        await saveArtifacts();
        throw err;
    }
});

after(async () => {
    for (const { page } of Object.values(peers)) await page.evaluate(() => window.hearthCall.stop()).catch(() => {});
    await browser?.close();
    await new Promise((r) => (pageServer ? pageServer.close(r) : r()));
    await hearth?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Reads `peer`'s call stats until `cond` holds for them, returning the last ones. */
async function statsUntil(peer, cond, ms, what) {
    let last;
    await withTimeout((async () => {
        for (;;) {
            last = await peer.page.evaluate(() => window.hearthCall.stats());
            if (cond(last)) return;
            await sleep(200);
        }
    })(), ms, `${what} (last stats: ${JSON.stringify(last)})`);
    return last;
}

/** Waits until `peer`'s inbound audio has grown past what it was, over a few reads: media is flowing now. */
async function audioFlows(name) {
    const peer = peers[name];
    const first = await statsUntil(peer, (s) => s.inbound?.packetsReceived > 0, 20_000,
        `${name}'s remote audio track to receive packets`);
    let prev = first;
    for (let i = 0; i < 3; i++) {
        prev = await statsUntil(peer,
            (s) => s.inbound.packetsReceived > prev.inbound.packetsReceived && s.inbound.bytesReceived > prev.inbound.bytesReceived,
            10_000, `${name}'s remote audio to keep receiving`);
    }
    // Decoded sound, not only packets: the fake microphone's tone at the
    // other end arrives as audio energy here (silence would add none).
    return statsUntil(peer, (s) => s.inbound.totalAudioEnergy > 0, 10_000, `${name} to hear the other side's tone`);
}

/** The m.call.* events of call `callId` in the DM, oldest first, as bob's /messages gives them. */
async function callEvents(callId) {
    const { chunk } = await api("GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100`, bob.access_token);
    return chunk.filter((e) => e.type.startsWith("m.call.") && e.content.call_id === callId).reverse();
}

test("two browsers call each other through hearth, and each hears the other", async (t) => {
    try {
        const callId = await alicePage.evaluate(([r, u]) => window.hearthCall.placeVoiceCall(r, u), [roomId, bob.user_id]);
        const rang = await bobPage.evaluate(() => window.hearthCall.ringing(20_000));
        assert.equal(rang.callId, callId, "bob's SDK rang with another call");
        assert.equal(rang.type, "voice");
        assert.equal(rang.from, alice.user_id);
        assert.equal(rang.state, "ringing");
        await bobPage.evaluate(() => window.hearthCall.answer());

        await Promise.all([
            alicePage.evaluate(() => window.hearthCall.waitState("connected", 30_000)),
            bobPage.evaluate(() => window.hearthCall.waitState("connected", 30_000)),
        ]);
        const [bobStats, aliceStats] = await Promise.all([audioFlows("bob"), audioFlows("alice")]);
        // forceTURN: both ends sent and received through the relay only.
        for (const [name, s] of [["bob", bobStats], ["alice", aliceStats]]) {
            assert.equal(s.pair?.local?.type, "relay", `${name}'s selected local candidate`);
            // Over UDP or TCP to the relay, whichever pair ICE nominated first.
            assert.match(s.pair.local.url, new RegExp(`^turn:${turnListen.replaceAll(".", "\\.")}\\?transport=(udp|tcp)$`), `${name}'s relay`);
            assert.equal(s.pair.remote?.type, "relay", `${name}'s selected remote candidate`);
        }
        for (const [name, s] of [["bob", bobStats], ["alice", aliceStats]]) {
            t.diagnostic(`${name} receives ${JSON.stringify(s.inbound)} over ${JSON.stringify(s.pair)}`);
        }

        await alicePage.evaluate(() => window.hearthCall.hangup());
        const [aliceEnd, bobEnd] = await Promise.all([
            alicePage.evaluate(() => window.hearthCall.waitEnded(10_000)),
            bobPage.evaluate(() => window.hearthCall.waitEnded(10_000)),
        ]);
        assert.equal(aliceEnd.hangup?.party, "local");
        assert.equal(bobEnd.hangup?.party, "remote");
        assert.equal(bobEnd.hangup?.reason, "user_hangup");
        for (const [name, end] of [["alice", aliceEnd], ["bob", bobEnd]]) {
            assert.ok(end.states.includes("connected"), `${name}'s call states: ${end.states}`);
            assert.equal(end.states.at(-1), "ended", `${name}'s call states: ${end.states}`);
        }

        // The signalling, as the room keeps it for anyone reading it later.
        const calls = await callEvents(callId);
        const types = calls.map((e) => e.type);
        for (const t of ["m.call.invite", "m.call.answer", "m.call.hangup"]) {
            assert.ok(types.includes(t), `${t} is not in the room: ${types.join(", ")}`);
        }
        const invite = calls.find((e) => e.type === "m.call.invite");
        assert.equal(invite.sender, alice.user_id);
        assert.equal(invite.content.version, "1");
        assert.equal(invite.content.invitee, bob.user_id);
        assert.equal(invite.content.offer.type, "offer");
        assert.match(invite.content.offer.sdp, /m=audio /);
        const answer = calls.find((e) => e.type === "m.call.answer");
        assert.equal(answer.sender, bob.user_id);
        assert.equal(answer.content.answer.type, "answer");
        // VoIP v1: the caller picks the answer it takes (select_answer names
        // the answering device's party_id), and each side's ICE candidates
        // reach the other, trickled in m.call.candidates or in its SDP.
        const select = calls.find((e) => e.type === "m.call.select_answer");
        assert.ok(select, `no m.call.select_answer in the room: ${types.join(", ")}`);
        assert.equal(select.sender, alice.user_id);
        assert.equal(select.content.selected_party_id, answer.content.party_id);
        for (const [who, sdp] of [[alice, invite.content.offer.sdp], [bob, answer.content.answer.sdp]]) {
            assert.ok(/^a=candidate:/m.test(sdp) || calls.some((e) => e.type === "m.call.candidates"
                && e.sender === who.user_id && e.content.candidates.length > 0), `no ICE candidates from ${who.user_id}`);
        }
        assert.equal(calls.find((e) => e.type === "m.call.hangup").sender, alice.user_id);
        assert.ok(types.indexOf("m.call.invite") < types.indexOf("m.call.answer")
            && types.indexOf("m.call.answer") < types.indexOf("m.call.hangup"), `out of order: ${types.join(", ")}`);
    } catch (err) {
        await saveArtifacts();
        throw err;
    }
});

test("bob declines the next call: alice's call ends as rejected, and the room says so", async () => {
    try {
        const callId = await alicePage.evaluate(([r, u]) => window.hearthCall.placeVoiceCall(r, u), [roomId, bob.user_id]);
        const rang = await bobPage.evaluate(() => window.hearthCall.ringing(20_000));
        assert.equal(rang.callId, callId, "bob's SDK rang with another call");
        await bobPage.evaluate(() => window.hearthCall.reject());

        const [aliceEnd, bobEnd] = await Promise.all([
            alicePage.evaluate(() => window.hearthCall.waitEnded(20_000)),
            bobPage.evaluate(() => window.hearthCall.waitEnded(10_000)),
        ]);
        assert.deepEqual(aliceEnd.hangup, { party: "remote", reason: "user_hangup" });
        assert.equal(bobEnd.hangup?.party, "local");
        assert.ok(!aliceEnd.states.includes("connected"), `alice's call states: ${aliceEnd.states}`);

        // VoIP v1: a decline is m.call.reject, and nothing was answered.
        const types = (await callEvents(callId)).map((e) => [e.type, e.sender]);
        assert.deepEqual(types.filter(([t]) => t !== "m.call.candidates"),
            [["m.call.invite", alice.user_id], ["m.call.reject", bob.user_id]]);
    } catch (err) {
        await saveArtifacts();
        throw err;
    }
});
