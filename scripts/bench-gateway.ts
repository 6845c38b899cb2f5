import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mintToken } from "../gateway/src/auth/index.js";
import { freePort, startProcess, waitForPort } from "./lib/processes.js";

// npm run bench:gateway — starts a gateway (sandbox transport, its own temporary database, default settings)
// as a separate process and runs autocannon against three routes, one after the other in one run: the trivial
// GET /healthz, POST /v1/messages (a distinct Idempotency-Key per request, so every request commits a new
// message that the outbox then sends), and POST /v1/otp/verify (a wrong code: one attempt spent per request).
// Then the same POST /v1/messages against a second gateway with DATABASE_SYNC=full (every 202 also waits for
// the WAL's fsync), to show what durability against a power cut costs on this disk. Prints requests/s,
// p99 latency and each route's ratio to the trivial route. Target: POST /v1/messages >= 0.5 x /healthz.
// BENCH_DURATION (seconds per route, default 10) and BENCH_CONNECTIONS (default 100) tune the run.

// autocannon ships no types; this is the part of its API used here.
interface AutocannonRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (request: AutocannonRequest) => AutocannonRequest;
}
interface AutocannonOptions extends AutocannonRequest {
  url: string;
  connections: number;
  duration: number;
  requests?: AutocannonRequest[];
}
interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p99: number };
  statusCodeStats?: Record<string, { count: number }>;
  errors: number;
  timeouts: number;
}
const autocannon = createRequire(import.meta.url)("autocannon") as (
  options: AutocannonOptions,
) => Promise<AutocannonResult>;

const duration = Number(process.env.BENCH_DURATION ?? 10);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 100);

interface Row {
  route: string;
  rps: number;
  p99: number;
  non2xx: number;
  errors: number;
}

async function measure(
  url: string,
  route: string,
  options: AutocannonRequest & { requests?: AutocannonRequest[]; expectStatus: number },
): Promise<Row> {
  const { expectStatus, ...rest } = options;
  const result = await autocannon({ url, connections, duration, ...rest });
  const expected = result.statusCodeStats?.[String(expectStatus)]?.count ?? 0;
  return {
    route,
    rps: result.requests.average,
    p99: result.latency.p99,
    non2xx: result.requests.total - expected,
    errors: result.errors + result.timeouts,
  };
}

interface StartedGateway {
  base: string;
  auth: Record<string, string>;
  stop(): Promise<void>;
}

async function startGateway(dir: string, name: string, env: Record<string, string>): Promise<StartedGateway> {
  const secret = randomBytes(32).toString("hex");
  const port = await freePort();
  const gateway = startProcess(name, process.execPath, ["--import", "tsx", "gateway/src/main.ts"], {
    cwd: join(import.meta.dirname, ".."),
    logFile: join(dir, `${name}.log`),
    env: {
      PATH: process.env.PATH ?? "",
      API_SECRET: secret,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_PATH: join(dir, `${name}.db`),
      WHATSAPP_TRANSPORT: "sandbox",
      SANDBOX_OUTBOX_PATH: join(dir, `${name}-outbox.jsonl`),
      LOG_LEVEL: "warn",
      ...env,
    },
  });
  await waitForPort(port, "127.0.0.1", 30_000);
  const { token } = await mintToken({
    secret,
    sub: "bench",
    scopes: ["messages:send", "otp"],
    ttlSeconds: 3600,
    issuer: "wagate",
    audience: "wagate",
  });
  return {
    base: `http://127.0.0.1:${port}`,
    auth: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    stop: () => gateway.stop(),
  };
}

/** Sum of a counter's samples in a Prometheus text exposition. */
function counter(metrics: string, name: string, labels = ""): number {
  let total = 0;
  for (const line of metrics.split("\n")) {
    if (line.startsWith(`${name}{`) && line.includes(labels))
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return total;
}

/**
 * Waits until the outbox has sent every accepted message, so the next route is measured without the previous
 * one's backlog; reports the outbox's own rate (messages sent per second while draining).
 */
async function drain(base: string): Promise<string> {
  const started = Date.now();
  let sentAtStart: number | undefined;
  for (;;) {
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const accepted = counter(metrics, "wagate_messages_accepted_total");
    const sent = counter(metrics, "wagate_outbox_sends_total", 'outcome="accepted"');
    sentAtStart ??= sent;
    if (sent >= accepted) {
      const seconds = (Date.now() - started) / 1000;
      return seconds < 0.5
        ? "no backlog"
        : `backlog of ${accepted - sentAtStart} sent at ${((sent - sentAtStart) / seconds).toFixed(0)}/s`;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

const messageBody = JSON.stringify({
  type: "text",
  to: "+14155550123",
  text: { body: "Your order has shipped." },
});
const withFreshKey: AutocannonRequest[] = [
  {
    setupRequest: (request) => ({
      ...request,
      headers: { ...request.headers, "idempotency-key": randomUUID() },
    }),
  },
];

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "wagate-bench-"));
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    process.stdout.write(
      `${connections} connections, ${duration} s per route, sandbox transport, LOG_LEVEL=warn\n`,
    );
    const primary = await startGateway(dir, "gateway", {});
    try {
      // One code to spend attempts on; after 5 the code is dead and verify keeps answering 422 the same way.
      await fetch(`${primary.base}/v1/otp`, {
        method: "POST",
        headers: primary.auth,
        body: JSON.stringify({ to: "+14155550100" }),
      });
      rows.push(await measure(`${primary.base}/healthz`, "GET /healthz", { expectStatus: 200 }));
      rows.push(
        await measure(`${primary.base}/v1/messages`, "POST /v1/messages", {
          method: "POST",
          headers: primary.auth,
          body: messageBody,
          expectStatus: 202,
        }),
      );
      notes.push(`after POST /v1/messages: ${await drain(primary.base)}`);
      rows.push(
        await measure(`${primary.base}/v1/messages`, "POST /v1/messages +key", {
          method: "POST",
          headers: primary.auth,
          body: messageBody,
          requests: withFreshKey,
          expectStatus: 202,
        }),
      );
      notes.push(`after POST /v1/messages +key: ${await drain(primary.base)}`);
      rows.push(
        await measure(`${primary.base}/v1/otp/verify`, "POST /v1/otp/verify", {
          method: "POST",
          headers: primary.auth,
          body: JSON.stringify({ to: "+14155550100", code: "000000" }),
          expectStatus: 422,
        }),
      );
    } finally {
      await primary.stop();
    }
    const fullSync = await startGateway(dir, "gateway-full-sync", { DATABASE_SYNC: "full" });
    try {
      rows.push(
        await measure(`${fullSync.base}/v1/messages`, "POST /v1/messages *", {
          method: "POST",
          headers: fullSync.auth,
          body: messageBody,
          expectStatus: 202,
        }),
      );
      notes.push(`after POST /v1/messages *: ${await drain(fullSync.base)}`);
    } finally {
      await fullSync.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const trivial = rows[0]?.rps ?? 1;
  process.stdout.write(
    `\n${"route".padEnd(24)}${"req/s".padStart(10)}${"p99 ms".padStart(10)}${"ratio".padStart(8)}${"unexpected".padStart(12)}\n`,
  );
  for (const row of rows) {
    process.stdout.write(
      `${row.route.padEnd(24)}${row.rps.toFixed(0).padStart(10)}${String(row.p99).padStart(10)}${(
        row.rps / trivial
      )
        .toFixed(2)
        .padStart(8)}${String(row.non2xx + row.errors).padStart(12)}\n`,
    );
  }
  process.stdout.write("+key: a distinct Idempotency-Key per request (one more row written per request)\n");
  process.stdout.write(
    "* DATABASE_SYNC=full: every 202 also waits for the WAL's fsync (default: normal, after COMMIT)\n",
  );
  for (const note of notes) process.stdout.write(`outbox ${note}\n`);
  const ratio = (rows[1]?.rps ?? 0) / trivial;
  process.stdout.write(
    `\nPOST /v1/messages / GET /healthz = ${ratio.toFixed(2)} (target >= 0.50, default settings): ${ratio >= 0.5 ? "met" : "NOT met"}\n`,
  );
}

await main();
