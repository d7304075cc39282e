// The web console at /_hearth/, in a real headless Chromium (the Debian
// chromium package, driven by playwright-core): the CLI's one-time link
// logs the browser in, the page shows the daemon's state and how to connect
// a client, and a screenshot is kept in artifacts/console.png.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";
import { HEARTH_BIN, Hearth, SERVER_NAME, freePort } from "./hearth.mjs";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const artifacts = path.join(path.dirname(fileURLToPath(import.meta.url)), "artifacts");
const run = promisify(execFile);

let hearth, dataDir, browser;

before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "hearth-console-"));
    hearth = new Hearth(dataDir, await freePort());
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

    // The link worked once; a second browser gets nowhere with it.
    const other = await browser.newContext();
    const stranger = await other.newPage();
    const res = await stranger.goto(link);
    assert.equal(res.status(), 401);
    await other.close();
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
