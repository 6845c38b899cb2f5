import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { startFakeGraph } from "../gateway/test/support/fake-graph.js";
import { buildGateway, imageNodeOptions, memoryOf, startCompiledGateway } from "./lib/compiled-gateway.js";

// npm run bench:broadcast — broadcasts against the fake Graph API answering with 50 ms latency, each run in a
// fresh gateway process (cloud transport, its own temporary database) so that its memory is its own:
//   1. 10,000 recipients at the default 80 msg/s: achieved rate at the fake (target: within 2 %);
//   2. 10,000 recipients at 1,000 msg/s, the highest rate BROADCAST_RATE_PER_SECOND allows (Meta's highest
//      tier): achieved rate, which the throttle bounds by design (1,000 plus its 0.1 s start burst);
//   3. 10,000 recipients uncapped: the same compiled gateway started with the throttle set to 10,000 msg/s, a
//      value config.ts refuses and only this bench's launcher passes (it calls createGateway itself), so that
//      the outbox and the transport are the limit: the highest rate reached (target: >= 1,000 msg/s);
//   4. 100,000 recipients at 1,000 msg/s: peak RSS (target: flat against run 2, well under 200 MB).
// The gateway runs as production runs it: compiled (`npm run build -w gateway`, done first), default settings
// (OUTBOX_CONCURRENCY etc.), and the NODE_OPTIONS of the image, read from gateway/Dockerfile (the one place they
// are set; the systemd unit runs that image). Only LOG_LEVEL=warn differs: the info line per message would
// measure the log file. BENCH_GATEWAY_NODE_OPTIONS replaces the image's NODE_OPTIONS for experiments (said in
// the output). Rates come from the fake's arrival timestamps (first to last request) and depend on the CPU left
// by other processes; the gateway's CPU time per message (user + system, from /proc) depends on it much less.
// Peak RSS is the kernel's high-water mark (VmHWM) of the gateway process, parsing of the request included; the
// peak while sending (after the 202) is sampled apart. BENCH_BROADCAST_RUNS=2,3 picks runs.

const LATENCY_MS = 50;
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
  cpuMsPerMessage: number;
  /** Fewest and most arrivals in one whole second of the run (first and last second excluded). */
  steadiestSecond: [number, number];
}

/** user + system CPU time of a process, in ms (fields 14 and 15 of /proc/<pid>/stat, in clock ticks of 10 ms). */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const REPO_ROOT = join(import.meta.dirname, "..");

const GATEWAY_NODE_OPTIONS = process.env.BENCH_GATEWAY_NODE_OPTIONS ?? imageNodeOptions();

/** config.ts caps BROADCAST_RATE_PER_SECOND at 1,000; the uncapped run sets ten times that, past the outbox's reach. */
const UNCAPPED_RATE = 10_000;

/**
 * The uncapped run's entry point: main.ts's start, with the one value config.ts would refuse. Everything else
 * (config parsing, store, outbox, transport) is the compiled gateway's own code.
 */
function uncappedLauncher(): string {
  const dist = pathToFileURL(join(REPO_ROOT, "gateway/dist/")).href;
  return [
    `const { loadConfig } = await import(${JSON.stringify(`${dist}config.js`)});`,
    `const { createGateway } = await import(${JSON.stringify(`${dist}gateway.js`)});`,
    "const config = loadConfig(process.env);",
    `const gateway = await createGateway({ ...config, BROADCAST_RATE_PER_SECOND: ${UNCAPPED_RATE} });`,
    "await gateway.start();",
    "process.once('SIGTERM', () => gateway.stop().then(() => process.exit(0), () => process.exit(1)));",
  ].join("\n");
}

async function run(recipients: number, rate: number): Promise<RunResult> {
  const uncapped = rate > 1000;
  const dir = mkdtempSync(join(tmpdir(), "wagate-bench-broadcast-"));
  const fake = await startFakeGraph({ latencyMs: LATENCY_MS, accessToken: ACCESS_TOKEN });
  // A file, not `node --input-type=module -e`: workers inherit the flag, and the checkpointer's worker is CommonJS.
  const launcher = join(dir, "uncapped-gateway.mjs");
  if (uncapped) writeFileSync(launcher, uncappedLauncher());
  const gateway = await startCompiledGateway({
    graph: { baseUrl: fake.baseUrl, accessToken: ACCESS_TOKEN },
    dir,
    nodeOptions: GATEWAY_NODE_OPTIONS,
    ...(uncapped ? { entry: launcher } : { env: { BROADCAST_RATE_PER_SECOND: String(rate) } }),
  }).catch(async (error: unknown) => {
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  const { port } = gateway;
  const pid = gateway.process.pid;
  try {
    const token = await gateway.token(["broadcasts"]);
    const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const idleRssMb = memoryOf(pid).rssKb / 1024;
    const list = Array.from({ length: recipients }, (_, i) => `+4477${String(i).padStart(8, "0")}`);
    const cpuBefore = cpuMsOf(pid);
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
      sendingPeakKb = Math.max(sendingPeakKb, memoryOf(pid).rssKb);
      const r = await fetch(`http://127.0.0.1:${port}/v1/broadcasts/${id}`, { headers: auth });
      const view = (await r.json()) as { status: string; sent: number; failed: number };
      if (view.status === "completed") break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const cpuMs = cpuMsOf(pid) - cpuBefore;
    const peakKb = memoryOf(pid).hwmKb;
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    heapReport = metrics
      .split("\n")
      .filter((l) => /^nodejs_(heap_size_(total|used)_bytes|external_memory_bytes)/.test(l))
      .map((l) => l.replace(/ (\d+)$/, (_, n: string) => ` ${(Number(n) / 1048576).toFixed(1)} MB`))
      .join(", ");
    const at = fake.requests.map((r) => r.at);
    const first = Math.min(...at);
    const last = Math.max(...at);
    const perSecond: number[] = [];
    for (const t of at) {
      const second = Math.floor((t - first) / 1000);
      perSecond[second] = (perSecond[second] ?? 0) + 1;
    }
    const whole = perSecond.slice(1, -1).map((n) => n ?? 0);
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
      cpuMsPerMessage: cpuMs / recipients,
      steadiestSecond: whole.length > 0 ? [Math.min(...whole), Math.max(...whole)] : [0, 0],
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
  { label: "3", recipients: 10_000, rate: UNCAPPED_RATE },
  { label: "4", recipients: 100_000, rate: 1000 },
];

async function main(): Promise<void> {
  buildGateway();
  const pick = process.env.BENCH_BROADCAST_RUNS?.split(",").map((s) => s.trim());
  process.stdout.write(
    `gateway NODE_OPTIONS: "${GATEWAY_NODE_OPTIONS}" (${process.env.BENCH_GATEWAY_NODE_OPTIONS === undefined ? "the image's, from gateway/Dockerfile" : "BENCH_GATEWAY_NODE_OPTIONS, not the image's"})\n`,
  );
  const results: RunResult[] = [];
  for (const r of RUNS) {
    if (pick && !pick.includes(r.label)) continue;
    const uncapped = r.rate > 1000;
    process.stdout.write(
      `run ${r.label}: ${r.recipients} recipients ${uncapped ? "uncapped" : `at ${r.rate} msg/s`} ...\n`,
    );
    const result = await run(r.recipients, r.rate);
    results.push(result);
    process.stdout.write(`  gateway memory at the end: ${heapReport}\n`);
    const deviation = ((result.achievedRate - r.rate) / r.rate) * 100;
    process.stdout.write(
      `  achieved ${result.achievedRate.toFixed(1)} msg/s${uncapped ? "" : ` (${deviation >= 0 ? "+" : ""}${deviation.toFixed(2)} %)`}, ` +
        `whole seconds ${result.steadiestSecond[0]}-${result.steadiestSecond[1]} msg, gateway CPU ${result.cpuMsPerMessage.toFixed(3)} ms/msg, ` +
        `${result.requests} requests for ${result.distinct} distinct recipients, 202 after ${result.acceptMs.toFixed(0)} ms, ` +
        `RSS idle ${result.idleRssMb.toFixed(1)} MB, peak ${result.peakRssMb.toFixed(1)} MB (while sending ${result.sendingPeakRssMb.toFixed(1)} MB)\n`,
    );
  }
  console.table(
    results.map((r) => ({
      recipients: r.recipients,
      "configured msg/s": r.configuredRate > 1000 ? "uncapped" : r.configuredRate,
      "achieved msg/s": Number(r.achievedRate.toFixed(1)),
      "CPU ms/msg": Number(r.cpuMsPerMessage.toFixed(3)),
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
