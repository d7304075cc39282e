// The hearth daemon under test, and small helpers shared by the Node tests.
// HEARTH_BIN names the binary (default: ../../bin/hearth, as make builds it).

import { execFile, spawn } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before } from "node:test";
import { promisify } from "node:util";

// Captured before any test file patches the global setTimeout.
const realSetTimeout = globalThis.setTimeout;

const here = path.dirname(fileURLToPath(import.meta.url));
export const HEARTH_BIN = path.resolve(process.env.HEARTH_BIN ?? path.join(here, "../../bin/hearth"));
export const SERVER_NAME = "localhost";

export /** Rejects with a descriptive error if `promise` does not settle within `ms`. */
function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = realSetTimeout(() => reject(new Error(`timed out after ${ms}ms: ${what}`)), ms);
        // A deadline alone must not keep the process alive once the tests are
        // over (e.g. the other client's wait when Promise.all rejected early).
        timer.unref();
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A loopback port free when checked, for a daemon to bind; never one it
 * picked before (the kernel may hand a freed port out again, to the next
 * daemon of the same test). It picks below the kernel's range for
 * outgoing connections when it is known: a port from that range, free
 * when checked, could be taken by some test's outgoing connection before
 * the daemon binds it (internal/e2e's freeAddr picks the same way).
 */
export async function freePort() {
    const low = ephemeralLow();
    for (let i = 0; low > minPickedPort + 1000 && i < 1000; i++) {
        const port = minPickedPort + Math.floor(Math.random() * (low - minPickedPort));
        if (!pickedPorts.has(port) && (await listens(port)) === port) {
            pickedPorts.add(port);
            return port;
        }
    }
    for (;;) {
        const port = await listens(0);
        if (port !== null && !pickedPorts.has(port)) {
            pickedPorts.add(port);
            return port;
        }
    }
}
const pickedPorts = new Set();

// minPickedPort is the lowest port freePort picks: above the ports
// services commonly listen on.
const minPickedPort = 10000;

// ephemeralLow is the lowest port of Linux's ip_local_port_range, 0 when
// unknown.
function ephemeralLow() {
    try {
        const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
        return Number.isInteger(low) ? low : 0;
    } catch {
        return 0;
    }
}

// listens binds port on 127.0.0.1 (0: any) and closes it again, and gives
// the port bound, or null when it was taken.
function listens(port) {
    return new Promise((resolve) => {
        const srv = net.createServer();
        srv.unref();
        srv.on("error", () => resolve(null));
        srv.listen(port, "127.0.0.1", () => {
            const bound = srv.address().port;
            srv.close(() => resolve(bound));
        });
    });
}

export const sleep = (ms) => new Promise((r) => realSetTimeout(r, ms));

// ---------------------------------------------------------------------------
// The daemon.

let runCounter = 0;

export class Hearth {
    /**
     * `serverName` defaults to SERVER_NAME; `extraArgs` are added to
     * `hearth run` (federation listener, certificates: see startFederation).
     */
    constructor(dataDir, port, { serverName = SERVER_NAME, extraArgs = [] } = {}) {
        this.dataDir = dataDir;
        this.port = port;
        this.serverName = serverName;
        this.extraArgs = extraArgs;
        this.baseUrl = `http://127.0.0.1:${port}`;
        this.proc = null;
        this.exit = null; // Promise<{code, signal}>
        this.logTail = "";
    }

    async start() {
        const n = ++runCounter;
        const artifacts = path.join(here, "artifacts");
        await mkdir(artifacts, { recursive: true });
        this.logPath = path.join(artifacts, `hearth-${process.pid}-${n}.log`);
        const log = createWriteStream(this.logPath);
        const args = [
            "run",
            "--data-dir",
            this.dataDir,
            "--client-listen",
            `127.0.0.1:${this.port}`,
            "--registration",
            "open",
            "--server-name",
            this.serverName,
            // Keys stay in the temp data dir, never in the developer's OS keyring.
            "--key-store",
            "file",
            // Test traffic stays on loopback: no mDNS on this machine's
            // networks, and no federation listener on them (the default,
            // federation = lan, listens there) unless a test sets one up.
            "--lan-discovery",
            "off",
            ...(this.extraArgs.some((a) => a.startsWith("--federation")) ? [] : ["--federation", "off"]),
            ...this.extraArgs,
        ];
        this.proc = spawn(HEARTH_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
        const keep = (chunk) => {
            log.write(chunk);
            this.logTail = (this.logTail + chunk.toString()).slice(-4000);
        };
        this.proc.stdout.on("data", keep);
        this.proc.stderr.on("data", keep);
        this.exit = new Promise((resolve) => {
            this.proc.on("exit", (code, signal) => {
                log.end();
                resolve({ code, signal });
            });
        });
        this.proc.on("error", (err) => {
            this.logTail += `\nspawn error: ${err.message}`;
        });

        // Wait for GET /versions to answer 200.
        const deadline = Date.now() + 15_000;
        let exited = null;
        this.exit.then((e) => (exited = e));
        for (;;) {
            if (exited) {
                throw new Error(`hearth exited early (${JSON.stringify(exited)}):\n${this.logTail}`);
            }
            try {
                const res = await fetch(`${this.baseUrl}/_matrix/client/versions`, {
                    signal: AbortSignal.timeout(1000),
                });
                if (res.status === 200) return;
            } catch {
                // not listening yet
            }
            if (Date.now() > deadline) {
                throw new Error(`hearth did not answer /versions within 15s:\n${this.logTail}`);
            }
            await sleep(50);
        }
    }

    /** SIGTERM, wait up to `ms` for a clean exit; SIGKILL as a last resort. */
    async stop(ms = 10_000) {
        if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) {
            return this.exit ? await this.exit : null;
        }
        const started = Date.now();
        this.proc.kill("SIGTERM");
        try {
            const res = await withTimeout(this.exit, ms, "hearth to exit after SIGTERM");
            return { ...res, ms: Date.now() - started };
        } catch (err) {
            this.proc.kill("SIGKILL");
            await withTimeout(this.exit, 5000, "hearth to exit after SIGKILL").catch(() => {});
            throw err;
        }
    }
}

// ---------------------------------------------------------------------------
// Federation between daemons.

const run = promisify(execFile);

/**
 * Starts one daemon per server name, federating with each other over TLS on
 * loopback, as the Go e2e harness does (internal/e2e/fednet_test.go): a CA
 * made for the test (openssl) that every daemon trusts through `--ca-file`,
 * a certificate per server name signed by it, and a static server table
 * (`--federation-servers name=addr,...`) mapping each name to its federation
 * listener, so no DNS or .well-known is involved. LAN discovery stays off:
 * the listeners are on loopback, where Hearth only browses.
 *
 * `extraArgs(name)` adds flags of the test's own to that server's daemon.
 *
 * Returns `{ servers: {name: Hearth}, stop() }`; stop() ends the daemons
 * and removes their files.
 */
export async function startFederation(names, { extraArgs = () => [] } = {}) {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hearth-interop-fed-"));
    const openssl = (...args) => run("openssl", args, { cwd: dir });
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    await openssl("req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=Hearth interop test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign");
    const addrs = {};
    for (const name of names) addrs[name] = `127.0.0.1:${await freePort()}`;
    const table = names.map((n) => `${n}=${addrs[n]}`).join(",");
    const servers = {};
    for (const name of names) {
        await openssl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
        await writeFile(path.join(dir, `${name}.ext`),
            `subjectAltName=DNS:${name}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n`);
        await openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", `${name}.ext`, "-out", `${name}.pem`);
        const dataDir = path.join(dir, name);
        await mkdir(dataDir);
        servers[name] = new Hearth(dataDir, await freePort(), {
            serverName: name,
            extraArgs: [
                "--federation-listen", addrs[name],
                "--tls-cert", path.join(dir, `${name}.pem`),
                "--tls-key", path.join(dir, `${name}.key`),
                "--ca-file", path.join(dir, "ca.pem"),
                "--federation-servers", table,
                ...extraArgs(name),
            ],
        });
    }
    const all = Object.values(servers);
    const stop = async () => {
        await Promise.allSettled(all.map((h) => h.stop()));
        if (!process.env.HEARTH_INTEROP_KEEP) await rm(dir, { recursive: true, force: true });
    };
    try {
        await Promise.all(all.map((h) => h.start()));
    } catch (err) {
        await stop();
        throw err;
    }
    return { servers, stop };
}

/**
 * One daemon for all the tests of a file: started in a fresh data dir
 * before them, stopped after them with the SDK clients the tests put in
 * `env.clients`. `env.hearth` and `env.baseUrl` are set once it runs.
 */
export function daemonForFile(name) {
    const env = { hearth: null, baseUrl: null, clients: [], dataDir: null };
    before(async () => {
        env.dataDir = await mkdtemp(path.join(os.tmpdir(), `hearth-interop-${name}-`));
        env.hearth = new Hearth(env.dataDir, await freePort());
        await env.hearth.start();
        env.baseUrl = env.hearth.baseUrl;
    });
    after(async () => {
        for (const c of env.clients) c.stopClient();
        await env.hearth?.stop();
        if (env.dataDir) await rm(env.dataDir, { recursive: true, force: true });
    });
    return env;
}
