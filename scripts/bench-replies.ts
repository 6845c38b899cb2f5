import { execFileSync } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { inboundNotification } from "../gateway/test/support/fake-graph.js";
import { freePort, startProcess, waitForPort } from "./lib/processes.js";

// npm run bench:replies — what costly automated-reply rules do to the gateway's answers. Starts a gateway (a
// child process running as production runs it: compiled with `npm run build -w gateway`, done first; sandbox
// transport, its own temporary database) with BENCH_RULES (default 100) enabled regex
// rules `(?:a|aa|aaa){1000}x`, ignore-case: each compiles to 7,003 instructions, past today's cap, so they are
// written to the database as rules made before the cap would be. Then sends BENCH_MESSAGES (default 20)
// signed Meta webhooks, one after the other, each carrying one inbound text of 4,096 `a` (no rule matches it:
// every rule runs on all of it until the per-message budget stops them), while a prober asks GET /healthz
// every 5 ms. Prints /healthz latency alone and while the messages are matched, the webhook's latency, and
// each message's recorded outcome; then re-delivers every message once and prints the same again.
// Targets: /healthz p99 under 50 ms while matching, the webhook answered in under 100 ms.

const ruleCount = Number(process.env.BENCH_RULES ?? 100);
const messageCount = Number(process.env.BENCH_MESSAGES ?? 20);
const COSTLY = "(?:a|aa|aaa){1000}x";
const APP_SECRET = randomBytes(16).toString("hex");

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

const summary = (values: readonly number[]) =>
  `n ${String(values.length).padStart(5)}  p50 ${percentile(values, 50).toFixed(1).padStart(7)} ms  p99 ${percentile(values, 99).toFixed(1).padStart(7)} ms  max ${Math.max(
    ...values,
  )
    .toFixed(1)
    .padStart(7)} ms`;

/** Asks /healthz every `intervalMs` until stopped; one request at a time, each timed. */
function probeHealth(base: string, intervalMs = 5): { stop(): Promise<number[]> } {
  const latencies: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      const response = await fetch(`${base}/healthz`);
      await response.arrayBuffer();
      latencies.push(performance.now() - started);
      await sleep(intervalMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return latencies;
    },
  };
}

function notification(id: string, from: string, text: string): string {
  return JSON.stringify(inboundNotification([{ id, from, text }]));
}

async function deliver(base: string, body: string): Promise<number> {
  const signature = `sha256=${createHmac("sha256", APP_SECRET).update(body).digest("hex")}`;
  const started = performance.now();
  const response = await fetch(`${base}/webhooks/whatsapp`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-hub-signature-256": signature },
    body,
  });
  await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`webhook answered ${response.status}`);
  return performance.now() - started;
}

function outcomes(db: Database.Database, ids: readonly string[]): Map<string, number> {
  const get = db.prepare("SELECT outcome FROM auto_reply_matches WHERE inbound_id = ?").pluck();
  const counts = new Map<string, number>();
  for (const id of ids) {
    const outcome = (get.get(id) as string | undefined) ?? "none";
    counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
  }
  return counts;
}

async function settled(db: Database.Database, ids: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((outcomes(db, ids).get("pending") ?? 0) > 0) {
    if (Date.now() > deadline) throw new Error("matches still pending");
    await sleep(50);
  }
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), "wagate-bench-replies-"));
  const port = await freePort();
  const dbPath = join(dir, "gateway.db");
  const root = join(import.meta.dirname, "..");
  process.stdout.write("building the gateway (npm run build -w gateway) ...\n");
  execFileSync("npm", ["run", "-s", "build", "-w", "gateway"], { cwd: root, stdio: "inherit" });
  const gateway = startProcess("gateway", process.execPath, ["gateway/dist/main.js"], {
    cwd: root,
    logFile: join(dir, "gateway.log"),
    env: {
      PATH: process.env.PATH ?? "",
      API_SECRET: randomBytes(32).toString("hex"),
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_PATH: dbPath,
      WHATSAPP_TRANSPORT: "sandbox",
      SANDBOX_OUTBOX_PATH: join(dir, "outbox.jsonl"),
      WHATSAPP_APP_SECRET: APP_SECRET,
      REPLY_COOLDOWN_SECONDS: "0",
      LOG_LEVEL: "warn",
    },
  });
  const db = new Database(dbPath);
  try {
    await waitForPort(port, "127.0.0.1", 30_000);
    const base = `http://127.0.0.1:${port}`;
    const now = Date.now();
    const insert = db.prepare(
      `INSERT INTO reply_rules (id, subject, match_type, pattern, ignore_case, priority, reply, enabled, created_at, updated_at)
       VALUES (?, ?, 'regex', ?, 1, ?, '{"type":"text","text":"never"}', 1, ?, ?)`,
    );
    db.transaction(() => {
      for (let i = 0; i < ruleCount; i++) insert.run(randomUUID(), `bench-${i % 10}`, COSTLY, i, now, now);
    })();
    process.stdout.write(
      `${ruleCount} regex rules ${COSTLY} (ignore-case, 7,003 instructions each), ${messageCount} inbound texts of 4,096 "a", one webhook at a time, /healthz probed every 5 ms\n`,
    );

    // Warm-up: the JIT, the database's pages, the regex worker's start.
    const warm = probeHealth(base);
    await sleep(1_000);
    const warmId = `wamid.bench-warm-${randomUUID()}`;
    await deliver(base, notification(warmId, "491510000000", "a".repeat(4096)));
    await settled(db, [warmId], 60_000);
    await warm.stop();

    const idle = probeHealth(base);
    await sleep(2_000);
    const healthIdle = await idle.stop();

    const ids = Array.from({ length: messageCount }, () => `wamid.bench-${randomUUID()}`);
    const bodies = ids.map((id, i) =>
      notification(id, `4915100${String(i).padStart(5, "0")}`, "a".repeat(4096)),
    );
    const busy = probeHealth(base);
    const matchingStarted = performance.now();
    const webhook: number[] = [];
    for (const body of bodies) webhook.push(await deliver(base, body));
    await settled(db, ids, 10 * 60_000);
    const matchingSeconds = (performance.now() - matchingStarted) / 1000;
    const healthBusy = await busy.stop();

    const again = probeHealth(base);
    const redelivery: number[] = [];
    for (const body of bodies) redelivery.push(await deliver(base, body));
    await sleep(500);
    const healthRedelivery = await again.stop();

    const out = (label: string, values: readonly number[]) =>
      process.stdout.write(`${label.padEnd(40)} ${summary(values)}\n`);
    out("GET /healthz, nothing to match", healthIdle);
    out("GET /healthz, while matching", healthBusy);
    out("POST /webhooks/whatsapp (signed)", webhook);
    out("POST /webhooks/whatsapp, re-deliveries", redelivery);
    out("GET /healthz, during re-deliveries", healthRedelivery);
    const counts = [...outcomes(db, ids)].map(([k, v]) => `${k} ${v}`).join(", ");
    process.stdout.write(
      `outcomes: ${counts}; ${messageCount} messages matched in ${matchingSeconds.toFixed(1)} s (${(messageCount / matchingSeconds).toFixed(2)} messages/s)\n`,
    );
    const p99 = percentile(healthBusy, 99);
    const webhookMax = Math.max(...webhook);
    process.stdout.write(
      `/healthz p99 while matching ${p99.toFixed(1)} ms (target < 50): ${p99 < 50 ? "met" : "NOT met"}; ` +
        `webhook max ${webhookMax.toFixed(1)} ms (target < 100): ${webhookMax < 100 ? "met" : "NOT met"}\n`,
    );
  } finally {
    db.close();
    await gateway.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
