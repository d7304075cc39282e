// A bridge's ghost as Element shows it: a small application service
// written here (an HTTP server answering the homeserver's transactions),
// registered with `hearth appservice add` from a registration YAML,
// registers a ghost with m.login.application_service, uploads a real PNG
// through the media API as the ghost, sets the ghost's display name and
// avatar_url (that mxc URI), joins it to a human's room and sends as it.
// The human's matrix-js-sdk client, started as Element starts it (Rust
// crypto, /sync), sees the ghost as a room member with that name, turns
// its avatar into a thumbnail URL that downloads an image (authenticated
// media, as Element asks for it), and shows the message as the ghost's.
// The ghost's rename reaches the member list; the appservice receives
// the human's answer in a transaction.
//
// Run with the other interop tests: `make test-interop`.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { promisify } from "node:util";
import zlib from "node:zlib";
import { RoomEvent } from "matrix-js-sdk";
import { HEARTH_BIN, SERVER_NAME, daemonForFile, freePort, withTimeout } from "./hearth.mjs";
import { cryptoClient, until } from "./sdk.mjs";

const env = daemonForFile("appservice");
const AS_TOKEN = "interop-as-token-0123456789";
const HS_TOKEN = "interop-hs-token-9876543210";
const GHOST = `@bridge_anna:${SERVER_NAME}`;
const GHOST_NAME = "Anna (bridged)";

// The appservice: what it received, and a server answering the homeserver.
const received = { events: [], badAuth: 0 };
let asServer;

function startAppservice(port) {
    asServer = http.createServer((req, res) => {
        const chunks = [];
        req.on("data", (c) => chunks.push(c));
        req.on("end", () => {
            // Application Service API §"Authorization": the hs_token as a
            // bearer token.
            if (req.headers.authorization !== `Bearer ${HS_TOKEN}`) {
                received.badAuth++;
                res.writeHead(403, { "Content-Type": "application/json" });
                res.end(JSON.stringify({ errcode: "M_FORBIDDEN" }));
                return;
            }
            const url = new URL(req.url, "http://localhost");
            if (req.method === "PUT" && url.pathname.startsWith("/_matrix/app/v1/transactions/")) {
                const txn = JSON.parse(Buffer.concat(chunks).toString() || "{}");
                received.events.push(...(txn.events ?? []));
            } else if (!(req.method === "POST" && url.pathname === "/_matrix/app/v1/ping")) {
                res.writeHead(404, { "Content-Type": "application/json" });
                res.end(JSON.stringify({ errcode: "M_NOT_FOUND" }));
                return;
            }
            res.writeHead(200, { "Content-Type": "application/json" });
            res.end("{}");
        });
    });
    return new Promise((resolve) => asServer.listen(port, "127.0.0.1", resolve));
}

/** A request to the client API as the appservice, acting as `userId` when given. */
async function asCall(method, p, body, { userId, contentType = "application/json" } = {}) {
    const url = new URL(env.baseUrl + p);
    if (userId) url.searchParams.set("user_id", userId);
    const res = await fetch(url, {
        method,
        headers: { Authorization: `Bearer ${AS_TOKEN}`, ...(body !== undefined ? { "Content-Type": contentType } : {}) },
        body: body === undefined ? undefined : contentType === "application/json" ? JSON.stringify(body) : body,
    });
    const text = await res.text();
    assert.ok(res.ok, `${method} ${p} as ${userId ?? "the appservice"}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : {};
}

// A real PNG: 16×16 RGB, an orange square on blue, zlib-compressed scanlines.
function crc32(buf) {
    let c = ~0;
    for (const b of buf) {
        c ^= b;
        for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
    }
    return ~c >>> 0;
}
function chunk(type, data) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
}
function png(size = 16) {
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(size, 0);
    ihdr.writeUInt32BE(size, 4);
    ihdr[8] = 8; // bit depth
    ihdr[9] = 2; // RGB
    const rows = [];
    for (let y = 0; y < size; y++) {
        const row = [0]; // filter: none
        for (let x = 0; x < size; x++) {
            const inner = x >= 4 && x < 12 && y >= 4 && y < 12;
            row.push(...(inner ? [255, 140, 0] : [30, 60, 200]));
        }
        rows.push(Buffer.from(row));
    }
    return Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        chunk("IHDR", ihdr),
        chunk("IDAT", zlib.deflateSync(Buffer.concat(rows))),
        chunk("IEND", Buffer.alloc(0)),
    ]);
}

let alice, roomId, avatarMxc, ghostEventId;

// In the first test rather than a before hook: the daemon's own (from
// daemonForFile) must have run.
test("the appservice registers with the running hearth through `hearth appservice add`", async () => {
    const port = await freePort();
    await startAppservice(port);
    const reg = [
        "id: interop-bridge",
        `url: http://127.0.0.1:${port}`,
        `as_token: ${AS_TOKEN}`,
        `hs_token: ${HS_TOKEN}`,
        "sender_localpart: bridgebot",
        "rate_limited: false",
        "namespaces:",
        "  users:",
        `    - regex: '^@bridge_.+:${SERVER_NAME.replaceAll(".", "\\.")}$'`,
        "      exclusive: true",
        "",
    ].join("\n");
    const file = path.join(env.dataDir, "registration.yaml");
    await writeFile(file, reg, { mode: 0o600 });
    // Registered while hearth runs, as a bridge's owner does it.
    await promisify(execFile)(HEARTH_BIN, ["appservice", "add", file, "--data-dir", env.dataDir, "--server-name", SERVER_NAME]);
    ({ client: alice } = await cryptoClient(env.baseUrl, "alice", env.clients)); // stopped before the daemon
    const listed = await promisify(execFile)(HEARTH_BIN, ["appservice", "list", "--data-dir", env.dataDir, "--server-name", SERVER_NAME]);
    assert.match(listed.stdout, /interop-bridge/);
});

after(async () => {
    await new Promise((r) => (asServer ? asServer.close(r) : r()));
});

test("the appservice makes a ghost with a display name and an uploaded avatar", async () => {
    const made = await asCall("POST", "/_matrix/client/v3/register",
        { type: "m.login.application_service", username: "bridge_anna", inhibit_login: true });
    assert.equal(made.user_id, GHOST);
    const uploaded = await asCall("POST", "/_matrix/media/v3/upload?filename=anna.png", png(), { userId: GHOST, contentType: "image/png" });
    avatarMxc = uploaded.content_uri;
    assert.match(avatarMxc, new RegExp(`^mxc://${SERVER_NAME}/`));
    const enc = encodeURIComponent(GHOST);
    await asCall("PUT", `/_matrix/client/v3/profile/${enc}/displayname`, { displayname: GHOST_NAME }, { userId: GHOST });
    await asCall("PUT", `/_matrix/client/v3/profile/${enc}/avatar_url`, { avatar_url: avatarMxc }, { userId: GHOST });
});

test("the human's client sees the ghost as a member with its name and avatar, and its message as the ghost's", async () => {
    ({ room_id: roomId } = await alice.createRoom({ preset: "private_chat", name: "Bridged chat", invite: [GHOST] }));
    await asCall("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {}, { userId: GHOST });
    await until(() => alice.getRoom(roomId)?.getMember(GHOST)?.membership === "join", 15_000, "alice's client to see the ghost join");
    const member = alice.getRoom(roomId).getMember(GHOST);
    assert.equal(member.name, GHOST_NAME, "the member list names the ghost");
    assert.equal(member.getMxcAvatarUrl(), avatarMxc);

    // The avatar as Element shows it: a thumbnail through authenticated
    // media, with the client's access token.
    const thumb = member.getAvatarUrl(env.baseUrl, 32, 32, "crop", false, false, true);
    assert.ok(thumb, "a thumbnail URL for the ghost's avatar");
    const res = await fetch(thumb, { headers: { Authorization: `Bearer ${alice.getAccessToken()}` } });
    assert.equal(res.status, 200, `GET ${thumb}`);
    assert.match(res.headers.get("content-type") ?? "", /^image\//);
    const body = Buffer.from(await res.arrayBuffer());
    assert.ok(body.length > 0, "the thumbnail has bytes");

    const seen = withTimeout(new Promise((resolve) => {
        const onTimeline = (event, room, toStart) => {
            if (room?.roomId === roomId && !toStart && event.getType() === "m.room.message" && event.getContent().body === "hello from the bridge") {
                alice.off(RoomEvent.Timeline, onTimeline);
                resolve(event);
            }
        };
        alice.on(RoomEvent.Timeline, onTimeline);
    }), 15_000, "the ghost's message in alice's timeline");
    ({ event_id: ghostEventId } = await asCall("PUT",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/ghost-txn-1`,
        { msgtype: "m.text", body: "hello from the bridge" }, { userId: GHOST }));
    const event = await seen;
    assert.equal(event.getId(), ghostEventId);
    assert.equal(event.getSender(), GHOST);
    assert.equal(event.sender?.name, GHOST_NAME, "the message's sender is shown with the ghost's name");
    assert.equal(event.sender?.getMxcAvatarUrl(), avatarMxc);

    // A bridge renames its ghost when the remote user does: the member
    // list follows.
    await asCall("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(GHOST)}/displayname`, { displayname: "Anna B. (bridged)" },
        { userId: GHOST });
    await until(() => alice.getRoom(roomId).getMember(GHOST)?.name === "Anna B. (bridged)", 15_000,
        "alice's client to show the ghost's new name");
    assert.equal(alice.getRoom(roomId).getMember(GHOST).getMxcAvatarUrl(), avatarMxc, "the avatar stays");
});

test("the appservice receives the human's answer in a transaction", async () => {
    const { event_id: answer } = await alice.sendTextMessage(roomId, "hello ghost");
    await until(() => received.events.some((e) => e.event_id === answer && e.sender === alice.getUserId()),
        15_000, "alice's answer at the appservice");
    assert.ok(received.events.some((e) => e.event_id === ghostEventId), "the ghost's own message went to its appservice too");
    assert.equal(received.badAuth, 0, "every request from hearth carried the hs_token");
});
