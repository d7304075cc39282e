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
// The same call runs again between two daemons federating over loopback
// TLS (startFederation in hearth.mjs): alice on hs1 and bob on hs2, the
// signalling carried between the servers as room events. There the media
// goes directly (host candidates): a relay never sends to another port of
// its own machine but its own relays' (calls/turn/relay.go, against SSRF
// into local services), so on one machine hs1's relay cannot reach hs2's.
// The relay between separate hosts is proven by internal/e2e/turn_test.go
// in network namespaces.
//
// On failure, a screenshot and the console of each page are kept in
// artifacts/ (call-alice.png, call-alice.log, call-fed-bob.png, ...), next
// to the daemons' logs.
//
// Run with the other interop tests: `make test-interop`.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { Hearth, freePort, sleep, startFederation, withTimeout } from "./hearth.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const artifacts = path.join(here, "artifacts");

let pageServer, browser;

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

before(async () => {
    [pageServer, browser] = await Promise.all([servePage(), chromium.launch({
        executablePath: CHROMIUM,
        args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic",
            // getUserMedia gets a generated tone, without asking anyone.
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            // Chromium leaves loopback interfaces out of WebRTC unless told.
            "--allow-loopback-in-peer-connection"],
    })]);
});

after(async () => {
    await browser?.close();
    await new Promise((r) => (pageServer ? pageServer.close(r) : r()));
});

/**
 * The daemon flags of the built-in relay on loopback at `listen`, allowed to
 * relay between loopback addresses (it never does unless told:
 * turn_allow_networks).
 */
const turnArgs = (listen) => ["--turn", "on", "--turn-listen", listen, "--turn-allow-networks", "127.0.0.0/8"];

async function api(server, method, p, token, body) {
    const res = await fetch(server.baseUrl + p, {
        method,
        headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    assert.equal(res.status, 200, `${method} ${p}: HTTP ${res.status} ${JSON.stringify(json)}`);
    return json;
}

/**
 * A person of the test: `name` registered on `server` (a Hearth whose relay
 * listens at `turnListen`). The page comes with openPage; with `relayed`
 * its calls go through the relay only (forceTURN).
 */
async function person(label, name, server, turnListen, relayed = true) {
    const user = await api(server, "POST", "/_matrix/client/v3/register", null,
        { username: name, password: `${name}-pw-123456`, auth: { type: "m.login.dummy" } });
    return { label, server, turnListen, relayed, user, id: user.user_id, token: user.access_token, logs: [] };
}

/** Opens `p`'s page in a browser context of its own (its own storage, as another person's browser) and signs in. */
async function openPage(p) {
    p.context = await browser.newContext();
    await p.context.grantPermissions(["microphone", "camera"], { origin: pageServer.origin });
    p.page = await p.context.newPage();
    p.page.on("console", (m) => p.logs.push(`${new Date().toISOString()} ${m.type()} ${m.text()}`));
    p.page.on("pageerror", (e) => p.logs.push(`${new Date().toISOString()} pageerror ${e.stack ?? e}`));
    await p.page.goto(`${pageServer.origin}/?log=debug`);
    await p.page.waitForSelector("body[data-ready=true]", { state: "attached", timeout: 10_000 });
    const started = await p.page.evaluate((opts) => window.hearthCall.start(opts), {
        baseUrl: p.server.baseUrl,
        userId: p.id,
        accessToken: p.token,
        deviceId: p.user.device_id,
        forceTURN: p.relayed,
    });
    assert.equal(started.supportsVoip, true, `${p.label}: the SDK does not support calls in this browser`);
    // The relay, as the SDK got it from /voip/turnServer on startClient.
    const servers = await p.page.evaluate(() => window.hearthCall.turnServers(10_000));
    assert.equal(servers.length, 1);
    assert.deepEqual([...servers[0].urls].sort(),
        [`turn:${p.turnListen}?transport=tcp`, `turn:${p.turnListen}?transport=udp`], `${p.label}'s TURN URIs`);
    assert.ok(servers[0].username && servers[0].credential, `${p.label} got no TURN credentials`);
}

async function closePage(p) {
    await p?.page?.evaluate(() => window.hearthCall.stop()).catch(() => {});
    await p?.context?.close();
}

/** alice makes the DM as Element does (bob invited at creation), bob joins; returns the room ID. */
async function directRoom(alice, bob) {
    const { room_id: roomId } = await api(alice.server, "POST", "/_matrix/client/v3/createRoom", alice.token,
        { preset: "trusted_private_chat", is_direct: true, invite: [bob.id] });
    await api(bob.server, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, bob.token, {});
    return roomId;
}

async function saveArtifacts(...people) {
    await mkdir(artifacts, { recursive: true });
    for (const p of people) {
        await p.page?.screenshot({ path: path.join(artifacts, `call-${p.label}.png`) }).catch(() => {});
        await writeFile(path.join(artifacts, `call-${p.label}.log`), p.logs.join("\n") + "\n");
    }
}

/** Runs `fn`, keeping the pages' screenshots and logs if it fails. */
async function keepingArtifacts(people, fn) {
    try {
        return await fn();
    } catch (err) {
        await saveArtifacts(...people);
        throw err;
    }
}

/** Reads `p`'s call stats until `cond` holds for them, returning the last ones. */
async function statsUntil(p, cond, ms, what) {
    let last;
    await withTimeout((async () => {
        for (;;) {
            last = await p.page.evaluate(() => window.hearthCall.stats());
            if (cond(last)) return;
            await sleep(200);
        }
    })(), ms, `${what} (last stats: ${JSON.stringify(last)})`);
    return last;
}

/** Waits until `p`'s inbound audio has grown past what it was, over a few reads: media is flowing now. */
async function audioFlows(p) {
    const first = await statsUntil(p, (s) => s.inbound?.packetsReceived > 0, 20_000,
        `${p.label}'s remote audio track to receive packets`);
    let prev = first;
    for (let i = 0; i < 3; i++) {
        prev = await statsUntil(p,
            (s) => s.inbound.packetsReceived > prev.inbound.packetsReceived && s.inbound.bytesReceived > prev.inbound.bytesReceived,
            10_000, `${p.label}'s remote audio to keep receiving`);
    }
    // Decoded sound, not only packets: the fake microphone's tone at the
    // other end arrives as audio energy here (silence would add none).
    // And the page plays it, as Element does, in an <audio> element.
    return statsUntil(p, (s) => s.inbound.totalAudioEnergy > 0 && s.playing > 0, 10_000,
        `${p.label} to hear the other side's tone`);
}

/** The m.call.* events of call `callId` in `roomId`, oldest first, as `p`'s server's /messages gives them. */
async function callEvents(p, roomId, callId) {
    const { chunk } = await api(p.server, "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100`, p.token);
    return chunk.filter((e) => e.type.startsWith("m.call.") && e.content.call_id === callId).reverse();
}

/** alice places a voice call to bob in `roomId`; bob's SDK rings with it. Returns the call ID. */
async function ring(alice, bob, roomId) {
    const callId = await alice.page.evaluate(([r, u]) => window.hearthCall.placeVoiceCall(r, u), [roomId, bob.id]);
    const rang = await bob.page.evaluate(() => window.hearthCall.ringing(20_000));
    assert.equal(rang.callId, callId, `${bob.label}'s SDK rang with another call`);
    assert.equal(rang.type, "voice");
    assert.equal(rang.from, alice.id);
    assert.equal(rang.state, "ringing");
    return callId;
}

/**
 * The whole call: alice calls, bob answers, each hears the other through
 * the relay, alice hangs up; then the signalling as each server's room
 * keeps it.
 */
async function callAndHangUp(t, alice, bob, roomId) {
    const callId = await ring(alice, bob, roomId);
    await bob.page.evaluate(() => window.hearthCall.answer());
    await Promise.all([alice, bob].map((p) => p.page.evaluate(() => window.hearthCall.waitState("connected", 30_000))));
    const heard = await Promise.all([bob, alice].map(audioFlows));
    // forceTURN: both ends sent and received through their relay only.
    for (const [p, s] of [[bob, heard[0]], [alice, heard[1]]]) {
        t.diagnostic(`${p.label} receives ${JSON.stringify(s.inbound)} over ${JSON.stringify(s.pair)}`);
        if (!p.relayed) {
            assert.equal(s.pair?.local?.type, "host", `${p.label}'s selected local candidate`);
            continue;
        }
        assert.equal(s.pair?.local?.type, "relay", `${p.label}'s selected local candidate`);
        // Over UDP or TCP to the relay, whichever pair ICE nominated first.
        assert.match(s.pair.local.url, new RegExp(`^turn:${p.turnListen.replaceAll(".", "\\.")}\\?transport=(udp|tcp)$`),
            `${p.label}'s relay`);
        assert.equal(s.pair.remote?.type, "relay", `${p.label}'s selected remote candidate`);
    }

    // matrix-js-sdk trickles a caller's late candidates 2 s after its
    // invite and drops what is still queued when the call ends; a call that
    // connects faster than that (ICE can, on peer-reflexive candidates)
    // would be hung up before they are sent. So alice hangs up only once
    // each side's candidates are on the other side's server.
    await withTimeout((async () => {
        for (;;) {
            const [onBob, onAlice] = await Promise.all([bob, alice].map((r) => callEvents(r, roomId, callId)));
            if (hasCandidates(onBob, alice, "m.call.invite", "offer") && hasCandidates(onAlice, bob, "m.call.answer", "answer")) return;
            await sleep(100);
        }
    })(), 10_000, "each side's ICE candidates to reach the other's server").catch(() => {});

    await alice.page.evaluate(() => window.hearthCall.hangup());
    const [aliceEnd, bobEnd] = await Promise.all([alice, bob].map((p) => p.page.evaluate(() => window.hearthCall.waitEnded(10_000))));
    assert.equal(aliceEnd.hangup?.party, "local");
    assert.deepEqual(bobEnd.hangup, { party: "remote", reason: "user_hangup" });
    for (const [p, end] of [[alice, aliceEnd], [bob, bobEnd]]) {
        assert.ok(end.states.includes("connected"), `${p.label}'s call states: ${end.states}`);
        assert.equal(end.states.at(-1), "ended", `${p.label}'s call states: ${end.states}`);
    }

    // The signalling, as the room keeps it for anyone reading it later: on
    // bob's server (where he read it live), and on alice's. Over federation
    // the last events (a candidate, the hangup) may still be on their way,
    // so both are read until they hold the same events (each in its own
    // order: arrival over federation may differ) or 10 s have passed.
    const readers = alice.server === bob.server ? [bob] : [bob, alice];
    const ids = (calls) => calls.map((e) => e.event_id).sort().join();
    let held;
    await withTimeout((async () => {
        for (;;) {
            held = await Promise.all(readers.map((r) => callEvents(r, roomId, callId)));
            const complete = held.every((calls) => calls.some((e) => e.type === "m.call.hangup") && calls.some((e) => e.type === "m.call.answer"));
            if (complete && held.every((calls) => ids(calls) === ids(held[0]))) return;
            await sleep(100);
        }
    })(), 10_000, "both servers to hold the call's events").catch(() => {});
    for (const calls of held) checkSignalling(calls, alice, bob);
    // Both servers hold the same events.
    assert.ok(held.every((calls) => ids(calls) === ids(held[0])), "the servers' rooms differ on the call's events");
}

/** Whether `who`'s ICE candidates are in `calls`: in the SDP of its `type` event (under `key`), or trickled in m.call.candidates. */
function hasCandidates(calls, who, type, key) {
    const sdp = calls.find((e) => e.type === type && e.sender === who.id)?.content[key]?.sdp ?? "";
    return /^a=candidate:/m.test(sdp) || calls.some((e) => e.type === "m.call.candidates"
        && e.sender === who.id && e.content.candidates.some((c) => c.candidate));
}

/** VoIP v1 signalling of a call alice placed, bob answered and alice hung up (spec: "Voice over IP"). */
function checkSignalling(calls, alice, bob) {
    const types = calls.map((e) => e.type);
    for (const t of ["m.call.invite", "m.call.answer", "m.call.select_answer", "m.call.hangup"]) {
        assert.ok(types.includes(t), `${t} is not in the room: ${types.join(", ")}`);
    }
    const invite = calls.find((e) => e.type === "m.call.invite");
    assert.equal(invite.sender, alice.id);
    assert.equal(invite.content.version, "1");
    assert.equal(invite.content.invitee, bob.id);
    assert.equal(invite.content.offer.type, "offer");
    assert.match(invite.content.offer.sdp, /m=audio /);
    const answer = calls.find((e) => e.type === "m.call.answer");
    assert.equal(answer.sender, bob.id);
    assert.equal(answer.content.answer.type, "answer");
    // The caller picks the answer it takes: select_answer names the
    // answering device's party_id.
    const select = calls.find((e) => e.type === "m.call.select_answer");
    assert.equal(select.sender, alice.id);
    assert.equal(select.content.selected_party_id, answer.content.party_id);
    // Each side's ICE candidates reach the other.
    assert.ok(hasCandidates(calls, alice, "m.call.invite", "offer"), `no ICE candidates from ${alice.id}`);
    assert.ok(hasCandidates(calls, bob, "m.call.answer", "answer"), `no ICE candidates from ${bob.id}`);
    assert.equal(calls.find((e) => e.type === "m.call.hangup").sender, alice.id);
    assert.ok(types.indexOf("m.call.invite") < types.indexOf("m.call.answer")
        && types.indexOf("m.call.answer") < types.indexOf("m.call.hangup"), `out of order: ${types.join(", ")}`);
}

describe("one hearth", () => {
    let hearth, dataDir, alice, bob, roomId;

    before(async () => {
        dataDir = await mkdtemp(path.join(os.tmpdir(), "hearth-call-"));
        const turnListen = `127.0.0.1:${await freePort()}`;
        hearth = new Hearth(dataDir, await freePort(), { extraArgs: turnArgs(turnListen) });
        await hearth.start();
        [alice, bob] = await Promise.all([person("alice", "alice", hearth, turnListen),
            person("bob", "bob", hearth, turnListen)]);
        await keepingArtifacts([alice, bob], async () => {
            roomId = await directRoom(alice, bob);
            await Promise.all([openPage(alice), openPage(bob)]);
        });
    });

    after(async () => {
        await Promise.all([closePage(alice), closePage(bob)]);
        await hearth?.stop();
        if (dataDir) await rm(dataDir, { recursive: true, force: true });
    });

    test("two browsers call each other through hearth, and each hears the other", (t) =>
        keepingArtifacts([alice, bob], () => callAndHangUp(t, alice, bob, roomId)));

    test("bob declines the next call: alice's call ends as rejected, and the room says so", () =>
        keepingArtifacts([alice, bob], async () => {
            const callId = await ring(alice, bob, roomId);
            await bob.page.evaluate(() => window.hearthCall.reject());
            const [aliceEnd, bobEnd] = await Promise.all([
                alice.page.evaluate(() => window.hearthCall.waitEnded(20_000)),
                bob.page.evaluate(() => window.hearthCall.waitEnded(10_000)),
            ]);
            assert.deepEqual(aliceEnd.hangup, { party: "remote", reason: "user_hangup" });
            assert.equal(bobEnd.hangup?.party, "local");
            assert.ok(!aliceEnd.states.includes("connected"), `alice's call states: ${aliceEnd.states}`);

            // VoIP v1: a decline is m.call.reject, and nothing was answered.
            const types = (await callEvents(bob, roomId, callId)).map((e) => [e.type, e.sender]);
            assert.deepEqual(types.filter(([t]) => t !== "m.call.candidates"),
                [["m.call.invite", alice.id], ["m.call.reject", bob.id]]);
        }));
});

describe("two hearths over federation", () => {
    let federation, alice, bob, roomId;

    before(async () => {
        const turn = { "hs1.test": `127.0.0.1:${await freePort()}`, "hs2.test": `127.0.0.1:${await freePort()}` };
        federation = await startFederation(Object.keys(turn), { extraArgs: (name) => turnArgs(turn[name]) });
        const { servers } = federation;
        [alice, bob] = await Promise.all([person("fed-alice", "alice", servers["hs1.test"], turn["hs1.test"], false),
            person("fed-bob", "bob", servers["hs2.test"], turn["hs2.test"], false)]);
        await keepingArtifacts([alice, bob], async () => {
            roomId = await directRoom(alice, bob);
            await Promise.all([openPage(alice), openPage(bob)]);
        });
    });

    after(async () => {
        await Promise.all([closePage(alice), closePage(bob)]);
        await federation?.stop();
    });

    test("alice@hs1 calls bob@hs2 over federation, and each hears the other", (t) =>
        keepingArtifacts([alice, bob], () => callAndHangUp(t, alice, bob, roomId)));
});
