import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mintToken } from "../gateway/src/auth/index.js";
import { freePort, startProcess, waitForPort } from "./lib/processes.js";

// npm run bench:gateway — starts two gateways (sandbox transport, each its own temporary database): one with
// default settings (DATABASE_SYNC=full: every 202 also waits for the WAL's sync, shared by a group), one with the
// opt-in DATABASE_SYNC=normal (the 202 follows COMMIT only), to show what durability against a power cut costs
// on this disk. Runs autocannon against the trivial GET /healthz, POST
// /v1/messages (without and with a distinct Idempotency-Key per request: every request commits a new message
// that the outbox then sends), and POST /v1/otp/verify (a wrong code: one attempt spent per request), one route
// after the other, in rounds: a warm-up round, then BENCH_ROUNDS (default 5). The outbox drains between routes.
// Prints per route the median requests/s and p99 latency, and the median and range of its ratio to /healthz in
// the same round. Target: POST /v1/messages >= 0.5 x /healthz. BENCH_DURATION (seconds per route, default 5)
// and BENCH_CONNECTIONS (default 100) tune the run. BENCH_INTAKE_ONLY=1 adds a third gateway whose outbox sends
// one message at a time (OUTBOX_CONCURRENCY=1), to show what accepting a message costs apart from sending it:
// information beside the target, never the target (its backlog is sent in the background, not drained).

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

const duration = Number(process.env.BENCH_DURATION ?? 5);
const rounds = Number(process.env.BENCH_ROUNDS ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 100);
const intakeOnly = process.env.BENCH_INTAKE_ONLY === "1";

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
  /** A cloud number of the registry (recorded by the sandbox like the default one), for sends with `from`. */
  numberId: string;
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
    scopes: ["messages:send", "otp", "admin"],
    ttlSeconds: 3600,
    issuer: "wagate",
    audience: "wagate",
  });
  const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  const created = await fetch(`http://127.0.0.1:${port}/v1/numbers`, {
    method: "POST",
    headers: auth,
    body: JSON.stringify({
      name: "bench",
      transport: "cloud",
      cloud: { phone_number_id: "100000000001", access_token: randomBytes(24).toString("hex") },
    }),
  });
  const number = (await created.json()) as { id?: string };
  if (created.status !== 201 || !number.id) throw new Error(`could not register a number: ${created.status}`);
  return {
    base: `http://127.0.0.1:${port}`,
    auth,
    numberId: number.id,
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

/** The plain text message every `POST /v1/messages` scenario without `from` or a key sends, labelled `route`. */
function sendText(route: string): (gateway: StartedGateway) => Promise<Row> {
  return (g) =>
    measure(`${g.base}/v1/messages`, route, {
      method: "POST",
      headers: g.auth,
      body: messageBody,
      expectStatus: 202,
    });
}

interface Scenario {
  route: string;
  gateway: "primary" | "normalSync" | "intakeOnly";
  /** Drain the outbox afterwards, so the next scenario is not measured beside this one's backlog. */
  drains: boolean;
  run(gateway: StartedGateway): Promise<Row>;
}

const scenarios: Scenario[] = [
  {
    route: "GET /healthz",
    gateway: "primary",
    drains: false,
    run: (g) => measure(`${g.base}/healthz`, "GET /healthz", { expectStatus: 200 }),
  },
  {
    route: "POST /v1/messages",
    gateway: "primary",
    drains: true,
    run: sendText("POST /v1/messages"),
  },
  {
    // `from` names a registry number: resolved from the registry's in-memory copy on every request.
    route: "POST /v1/messages from",
    gateway: "primary",
    drains: true,
    run: (g) =>
      measure(`${g.base}/v1/messages`, "POST /v1/messages from", {
        method: "POST",
        headers: g.auth,
        body: JSON.stringify({ ...JSON.parse(messageBody), from: g.numberId }),
        expectStatus: 202,
      }),
  },
  {
    route: "POST /v1/messages +key",
    gateway: "primary",
    drains: true,
    run: (g) =>
      measure(`${g.base}/v1/messages`, "POST /v1/messages +key", {
        method: "POST",
        headers: g.auth,
        body: messageBody,
        requests: withFreshKey,
        expectStatus: 202,
      }),
  },
  {
    route: "POST /v1/otp/verify",
    gateway: "primary",
    drains: false,
    run: (g) =>
      measure(`${g.base}/v1/otp/verify`, "POST /v1/otp/verify", {
        method: "POST",
        headers: g.auth,
        body: JSON.stringify({ to: "+14155550100", code: "000000" }),
        expectStatus: 422,
      }),
  },
  {
    route: "POST /v1/messages *",
    gateway: "normalSync",
    drains: true,
    run: sendText("POST /v1/messages *"),
  },
  ...(intakeOnly
    ? [
        {
          route: "POST /v1/messages #",
          gateway: "intakeOnly",
          drains: false,
          run: sendText("POST /v1/messages #"),
        } satisfies Scenario,
      ]
    : []),
];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "wagate-bench-"));
  // Rows per route, one per round; each round measures every route once, one after the other, so a ratio is
  // taken between neighbours in time: this machine's speed drifts by tens of percent from minute to minute.
  const results = new Map<string, Row[]>(scenarios.map((s) => [s.route, []]));
  const drains: string[] = [];
  try {
    process.stdout.write(
      `${connections} connections, ${duration} s per route, ${rounds} rounds after a warm-up, sandbox transport, LOG_LEVEL=warn\n`,
    );
    const gateways = {
      primary: await startGateway(dir, "gateway", {}),
      normalSync: await startGateway(dir, "gateway-normal-sync", { DATABASE_SYNC: "normal" }),
      intakeOnly: intakeOnly
        ? await startGateway(dir, "gateway-intake-only", { OUTBOX_CONCURRENCY: "1" })
        : undefined,
    };
    try {
      // One code to spend attempts on; after 5 the code is dead and verify keeps answering 422 the same way.
      await fetch(`${gateways.primary.base}/v1/otp`, {
        method: "POST",
        headers: gateways.primary.auth,
        body: JSON.stringify({ to: "+14155550100" }),
      });
      for (let round = 0; round <= rounds; round++) {
        for (const scenario of scenarios) {
          const gateway = gateways[scenario.gateway];
          if (!gateway) continue;
          const row = await scenario.run(gateway);
          // Round 0 warms up the JIT and the database's pages; it is not counted.
          if (round > 0) results.get(scenario.route)?.push(row);
          if (scenario.drains) {
            const drained = await drain(gateway.base);
            if (round === rounds) drains.push(`after ${scenario.route}: ${drained}`);
          }
        }
        if (round > 0) {
          const trivial = results.get("GET /healthz")?.[round - 1]?.rps ?? 1;
          const messages = results.get("POST /v1/messages")?.[round - 1]?.rps ?? 0;
          process.stdout.write(
            `round ${round}: /healthz ${trivial.toFixed(0)} req/s, POST /v1/messages ${messages.toFixed(0)} req/s, ratio ${(messages / trivial).toFixed(2)}\n`,
          );
        }
      }
    } finally {
      await gateways.primary.stop();
      await gateways.normalSync.stop();
      await gateways.intakeOnly?.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const trivialRows = results.get("GET /healthz") ?? [];
  process.stdout.write(
    `\nmedians over ${rounds} rounds; ratio = route / GET /healthz of the same round (min-max in brackets)\n`,
  );
  process.stdout.write(
    `${"route".padEnd(24)}${"req/s".padStart(10)}${"p99 ms".padStart(10)}${"ratio".padStart(8)}${"range".padStart(14)}${"unexpected".padStart(12)}\n`,
  );
  const ratioOf = (rows: Row[]) => rows.map((row, i) => row.rps / (trivialRows[i]?.rps ?? 1));
  for (const [route, rows] of results) {
    const ratios = ratioOf(rows);
    const unexpected = rows.reduce((sum, row) => sum + row.non2xx + row.errors, 0);
    process.stdout.write(
      `${route.padEnd(24)}${median(rows.map((r) => r.rps))
        .toFixed(0)
        .padStart(10)}${String(median(rows.map((r) => r.p99))).padStart(10)}${median(ratios)
        .toFixed(2)
        .padStart(
          8,
        )}${`[${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}]`.padStart(14)}${String(
        unexpected,
      ).padStart(12)}\n`,
    );
  }
  process.stdout.write("+key: a distinct Idempotency-Key per request (one more row written per request)\n");
  process.stdout.write(
    "* DATABASE_SYNC=normal (opt-in): the 202 follows COMMIT only, not the WAL's sync (default: full)\n",
  );
  if (intakeOnly)
    process.stdout.write(
      "# OUTBOX_CONCURRENCY=1 (BENCH_INTAKE_ONLY=1): the outbox sends one message at a time while requests arrive, so this is what accepting costs apart from sending (information, not the target)\n",
    );
  for (const note of drains) process.stdout.write(`outbox ${note}\n`);
  for (const route of ["POST /v1/messages", "POST /v1/messages from"]) {
    const ratio = median(ratioOf(results.get(route) ?? []));
    process.stdout.write(
      `${route === "POST /v1/messages" ? "\n" : ""}${route} / GET /healthz = ${ratio.toFixed(2)} (median of ${rounds} rounds; target >= 0.50, default settings): ${ratio >= 0.5 ? "met" : "NOT met"}\n`,
    );
  }
}

await main();
