import { X509Certificate } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../scripts/lib/local-stack.js";
import { freePort } from "../../scripts/lib/processes.js";

// `npm run local`'s library, for real: Pebble, certbot's HTTP-01 flow through the rendered nginx, the gateway
// behind it. Checked as a client sees it (Pebble's root only), through a forced renewal (new certificate, same
// nginx master), and down to every process being gone after stop().

let dir: string;
let stack: LocalStack | undefined;
let ca: string;
let httpsPort: number;

interface Served {
  serial: string;
  issuer: string;
  authorized: boolean;
  authorizationError: string | undefined;
}

/** The certificate nginx serves for the stack's domain, verified against `ca` only. */
function servedCertificate(): Promise<Served> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: "127.0.0.1", port: httpsPort, servername: "gateway.test", ca, rejectUnauthorized: false },
      () => {
        const cert = socket.getPeerX509Certificate();
        if (!cert) return reject(new Error("no certificate"));
        resolve({
          serial: cert.serialNumber,
          issuer: cert.issuer,
          authorized: socket.authorized,
          authorizationError: socket.authorizationError?.toString(),
        });
        socket.end();
      },
    );
    socket.on("error", reject);
  });
}

function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: httpsPort,
        path,
        servername: "gateway.test",
        ca,
        headers: { host: "gateway.test", ...headers },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wagate-local-"));
  await chmod(dir, 0o755); // nginx's workers serve the ACME webroot from below it
  httpsPort = await freePort();
  stack = await startLocalStack({ rootDir: join(dir, "local"), httpPort: await freePort(), httpsPort });
  ca = await readFile(stack.caCert, "utf8");
}, 120_000);

afterAll(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the local stack", () => {
  it("serves a certificate that Pebble issued through the ACME flow, trusted with Pebble's root only", async () => {
    const served = await servedCertificate();
    expect(served.authorizationError).toBeUndefined();
    expect(served.authorized).toBe(true);
    expect(served.issuer).toMatch(/Pebble/i);
    const root = new X509Certificate(ca);
    expect(root.subject).toMatch(/Pebble Root/i);
  });

  it("answers through nginx to the gateway with the demo token, and writes stack.json (0600)", async () => {
    const health = await get("/healthz");
    expect(health.status).toBe(200);
    const unauthenticated = await get("/v1/messages/00000000-0000-4000-8000-000000000000");
    expect(unauthenticated.status).toBe(401);
    const authenticated = await get("/v1/messages/00000000-0000-4000-8000-000000000000", {
      authorization: `Bearer ${stack?.adminToken}`,
    });
    expect(authenticated.status).toBe(404);
    const factsFile = join(dir, "local", "stack.json");
    const facts = JSON.parse(await readFile(factsFile, "utf8")) as Record<string, string>;
    expect(Object.keys(facts).sort()).toEqual(
      [
        "adminToken",
        "appSecret",
        "baseUrl",
        "caCert",
        "httpUrl",
        "metaWebhookUrl",
        "resolve",
        "sandboxOutbox",
        "verifyToken",
        "webhookAllowHttp",
        "webhookAllowedHosts",
      ].sort(),
    );
    expect(facts.baseUrl).toBe(`https://gateway.test:${httpsPort}`);
    expect(facts.resolve).toBe(`gateway.test:${httpsPort}:127.0.0.1`);
    expect((await stat(factsFile)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "local", "api-secret"))).mode & 0o777).toBe(0o600);
  });

  it("renews with certbot: nginx serves the new certificate without a restart", async () => {
    if (!stack) throw new Error("stack did not start");
    const before = await servedCertificate();
    const masterPid = stack.nginx.pid;
    await stack.renew();
    let after = await servedCertificate();
    const deadline = Date.now() + 15_000;
    while (after.serial === before.serial && Date.now() < deadline) {
      await sleep(100);
      after = await servedCertificate();
    }
    expect(after.serial).not.toBe(before.serial);
    expect(after.authorized).toBe(true);
    expect(stack.nginx.pid).toBe(masterPid);
    expect(alive(masterPid)).toBe(true);
    expect(stack.nginx.child.exitCode).toBeNull();
  });

  it("stop() leaves no process behind (nginx workers included)", async () => {
    if (!stack) throw new Error("stack did not start");
    const master = stack.nginx.pid;
    const workers = (await readFile(`/proc/${master}/task/${master}/children`, "utf8"))
      .trim()
      .split(/\s+/)
      .map(Number);
    expect(workers.length).toBeGreaterThan(0);
    // The stack's own processes are all running; of nginx's children, the workers a reload (the renewal above)
    // retired may still be finishing: counted only while alive.
    const started = stack.processes().map((p) => p.pid);
    expect(started.every(alive)).toBe(true);
    const pids = [...started, ...workers.filter(alive)];
    await stack.stop();
    const deadline = Date.now() + 10_000;
    while (pids.some(alive) && Date.now() < deadline) await sleep(100);
    expect(pids.filter(alive)).toEqual([]);
  });
});
