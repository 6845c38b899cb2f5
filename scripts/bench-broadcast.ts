import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mintToken } from "../gateway/src/auth/index.js";
import { startFakeGraph } from "../gateway/test/support/fake-graph.js";
import { freePort, startProcess, waitForPort } from "./lib/processes.js";

// npm run bench:broadcast — broadcasts against the fake Graph API answering with 50 ms latency, each run in a
// fresh gateway process (cloud transport, its own temporary database) so that its memory is its own:
//   1. 10,000 recipients at the default 80 msg/s: achieved rate at the fake (target: within 2 %), peak RSS;
//   2. 10,000 recipients at 1,000 msg/s (the highest rate Meta grants; 50 in flight at 50 ms): achieved rate
//      (target: >= 1,000 msg/s), peak RSS;
//   3. 100,000 recipients at 1,000 msg/s: achieved rate, peak RSS (target: flat, well under 200 MB).
// Rates come from the fake's arrival timestamps (first to last request). Peak RSS is the kernel's high-water
// mark (VmHWM) of the gateway process, which includes parsing the request; the peak while sending (after the
// 202) is sampled apart, and the gateway's V8 heap is read from /metrics at the end. BENCH_BROADCAST_RUNS=1,2
// picks runs; the gateway runs compiled (`npm run build -w gateway`, done first), as the image runs it, so that
// its memory is the gateway's and not a TypeScript loader's; BENCH_GATEWAY_NODE_OPTIONS passes V8 flags to the gateway (--max-old-space-size=128 shows that
// what stays resident is garbage V8 has not collected yet, not state that grows with the recipients).

const LATENCY_MS = 50;
const API_SECRET = randomBytes(32).toString("hex");
const ACCESS_TOKEN = randomBytes(16).toString("hex");

interface RunResult {
  recipients: number;
  configuredRate: number;
  achievedRate: number;
  acceptMs: number;
  idleRssMb: number;
  peakRssMb: number;
  sendingPeakRssMb: number;
  requests: number;
  distinct: number;
}

function memoryOf(pid: number): { rssKb: number; hwmKb: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
  return { rssKb: field("VmRSS"), hwmKb: field("VmHWM") };
}

const REPO_ROOT = join(import.meta.dirname, "..");

async function run(recipients: number, rate: number): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), "wagate-bench-broadcast-"));
  const fake = await startFakeGraph({ latencyMs: LATENCY_MS, accessToken: ACCESS_TOKEN });
  const port = await freePort();
  const gateway = startProcess("gateway", process.execPath, ["gateway/dist/main.js"], {
    cwd: REPO_ROOT,
    logFile: join(dir, "gateway.log"),
    env: {
      PATH: process.env.PATH ?? "",
      API_SECRET,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_PATH: join(dir, "bench.db"),
      WHATSAPP_TRANSPORT: "cloud",
      GRAPH_API_BASE_URL: fake.baseUrl,
      WHATSAPP_ACCESS_TOKEN: ACCESS_TOKEN,
      WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
      // 1,000 msg/s x 50 ms = 50 requests in flight; leave room for claim and bookkeeping latency.
      OUTBOX_CONCURRENCY: "128",
      BROADCAST_RATE_PER_SECOND: String(rate),
      // Per-message info lines would measure the logger; warnings and errors still show.
      LOG_LEVEL: "warn",
      ...(process.env.BENCH_GATEWAY_NODE_OPTIONS
        ? { NODE_OPTIONS: process.env.BENCH_GATEWAY_NODE_OPTIONS }
        : {}),
    },
  });
  try {
    await waitForPort(port, "127.0.0.1", 30_000);
    const { token } = await mintToken({
      secret: API_SECRET,
      sub: "bench",
      scopes: ["broadcasts"],
      ttlSeconds: 3600,
      issuer: "wagate",
      audience: "wagate",
    });
    const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const idleRssMb = memoryOf(gateway.pid).rssKb / 1024;
    const list = Array.from({ length: recipients }, (_, i) => `+4477${String(i).padStart(8, "0")}`);
    const started = performance.now();
    const response = await fetch(`http://127.0.0.1:${port}/v1/broadcasts`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ template: { name: "bench", language: "en_US" }, recipients: list }),
    });
    const acceptMs = performance.now() - started;
    if (response.status !== 202) throw new Error(`POST /v1/broadcasts answered ${response.status}`);
    const { id } = (await response.json()) as { id: string };

    let sendingPeakKb = 0;
    for (;;) {
      sendingPeakKb = Math.max(sendingPeakKb, memoryOf(gateway.pid).rssKb);
      const r = await fetch(`http://127.0.0.1:${port}/v1/broadcasts/${id}`, { headers: auth });
      const view = (await r.json()) as { status: string; sent: number; failed: number };
      if (view.status === "completed") break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const peakKb = memoryOf(gateway.pid).hwmKb;
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    heapReport = metrics
      .split("\n")
      .filter((l) => /^nodejs_(heap_size_(total|used)_bytes|external_memory_bytes)/.test(l))
      .map((l) => l.replace(/ (\d+)$/, (_, n: string) => ` ${(Number(n) / 1048576).toFixed(1)} MB`))
      .join(", ");
    const at = fake.requests.map((r) => r.at);
    const first = Math.min(...at);
    const last = Math.max(...at);
    return {
      recipients,
      configuredRate: rate,
      achievedRate: (at.length - 1) / ((last - first) / 1000),
      acceptMs,
      idleRssMb,
      peakRssMb: peakKb / 1024,
      sendingPeakRssMb: sendingPeakKb / 1024,
      requests: fake.requests.length,
      distinct: new Set(fake.accepted().map((b) => String(b.to))).size,
    };
  } finally {
    await gateway.stop();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

let heapReport = "";

const RUNS: Array<{ label: string; recipients: number; rate: number }> = [
  { label: "1", recipients: 10_000, rate: 80 },
  { label: "2", recipients: 10_000, rate: 1000 },
  { label: "3", recipients: 100_000, rate: 1000 },
];

async function main(): Promise<void> {
  process.stdout.write("building the gateway (npm run build -w gateway) ...\n");
  execFileSync("npm", ["run", "-s", "build", "-w", "gateway"], { cwd: REPO_ROOT, stdio: "inherit" });
  const pick = process.env.BENCH_BROADCAST_RUNS?.split(",").map((s) => s.trim());
  const results: RunResult[] = [];
  for (const r of RUNS) {
    if (pick && !pick.includes(r.label)) continue;
    process.stdout.write(`run ${r.label}: ${r.recipients} recipients at ${r.rate} msg/s ...\n`);
    const result = await run(r.recipients, r.rate);
    results.push(result);
    process.stdout.write(`  gateway memory at the end: ${heapReport}\n`);
    const deviation = ((result.achievedRate - r.rate) / r.rate) * 100;
    process.stdout.write(
      `  achieved ${result.achievedRate.toFixed(1)} msg/s (${deviation >= 0 ? "+" : ""}${deviation.toFixed(2)} %), ` +
        `${result.requests} requests for ${result.distinct} distinct recipients, 202 after ${result.acceptMs.toFixed(0)} ms, ` +
        `RSS idle ${result.idleRssMb.toFixed(1)} MB, peak ${result.peakRssMb.toFixed(1)} MB (while sending ${result.sendingPeakRssMb.toFixed(1)} MB)\n`,
    );
  }
  console.table(
    results.map((r) => ({
      recipients: r.recipients,
      "configured msg/s": r.configuredRate,
      "achieved msg/s": Number(r.achievedRate.toFixed(1)),
      "202 after ms": Math.round(r.acceptMs),
      "idle RSS MB": Number(r.idleRssMb.toFixed(1)),
      "peak RSS MB": Number(r.peakRssMb.toFixed(1)),
      "peak RSS sending MB": Number(r.sendingPeakRssMb.toFixed(1)),
      "exactly once": r.requests === r.recipients && r.distinct === r.recipients,
    })),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
