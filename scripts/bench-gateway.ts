import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mintToken } from "../gateway/src/auth/index.js";
import { freePort, startProcess, waitForPort } from "./lib/processes.js";

// npm run bench:gateway — starts a gateway (sandbox transport, its own temporary database) as a separate
// process and runs autocannon against three routes, one after the other in one run: the trivial GET /healthz,
// POST /v1/messages (a distinct Idempotency-Key per request, so every request commits a new message that the
// outbox then sends), and POST /v1/otp/verify (a wrong code: one attempt spent per request). Prints requests/s,
// p99 latency and each route's ratio to the trivial route. Target: POST /v1/messages >= 0.5 x /healthz.
// BENCH_DURATION (seconds, default 10) and BENCH_CONNECTIONS (default 20) tune the run.

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
const connections = Number(process.env.BENCH_CONNECTIONS ?? 20);

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

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "wagate-bench-"));
  const secret = randomBytes(32).toString("hex");
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const gateway = startProcess("gateway", process.execPath, ["--import", "tsx", "gateway/src/main.ts"], {
    cwd: join(import.meta.dirname, ".."),
    logFile: join(dir, "gateway.log"),
    env: {
      PATH: process.env.PATH ?? "",
      API_SECRET: secret,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_PATH: join(dir, "wagate.db"),
      WHATSAPP_TRANSPORT: "sandbox",
      SANDBOX_OUTBOX_PATH: join(dir, "sandbox-outbox.jsonl"),
      LOG_LEVEL: "warn",
    },
  });
  try {
    await waitForPort(port, "127.0.0.1", 30_000);
    const { token } = await mintToken({
      secret,
      sub: "bench",
      scopes: ["messages:send", "otp"],
      ttlSeconds: 3600,
      issuer: "wagate",
      audience: "wagate",
    });
    const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    // One code to spend attempts on; after 5 the code is dead and verify keeps answering 422 from the same path.
    await fetch(`${base}/v1/otp`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ to: "+14155550100" }),
    });

    process.stdout.write(`gateway on ${base}; ${connections} connections, ${duration} s per route\n`);
    const rows: Row[] = [];
    rows.push(await measure(`${base}/healthz`, "GET /healthz", { expectStatus: 200 }));
    rows.push(
      await measure(`${base}/v1/messages`, "POST /v1/messages", {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ type: "text", to: "+14155550123", text: { body: "Your order has shipped." } }),
        requests: [
          {
            setupRequest: (request) => ({
              ...request,
              headers: { ...request.headers, "idempotency-key": randomUUID() },
            }),
          },
        ],
        expectStatus: 202,
      }),
    );
    rows.push(
      await measure(`${base}/v1/otp/verify`, "POST /v1/otp/verify", {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ to: "+14155550100", code: "000000" }),
        expectStatus: 422,
      }),
    );

    const trivial = rows[0]?.rps ?? 1;
    process.stdout.write(
      `\n${"route".padEnd(22)}${"req/s".padStart(10)}${"p99 ms".padStart(10)}${"ratio".padStart(8)}${"unexpected".padStart(12)}\n`,
    );
    for (const row of rows) {
      process.stdout.write(
        `${row.route.padEnd(22)}${row.rps.toFixed(0).padStart(10)}${String(row.p99).padStart(10)}${(
          row.rps / trivial
        )
          .toFixed(2)
          .padStart(8)}${String(row.non2xx + row.errors).padStart(12)}\n`,
      );
    }
    const ratio = (rows[1]?.rps ?? 0) / trivial;
    process.stdout.write(
      `\nPOST /v1/messages / GET /healthz = ${ratio.toFixed(2)} (target >= 0.50): ${ratio >= 0.5 ? "met" : "NOT met"}\n`,
    );
  } finally {
    await gateway.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
