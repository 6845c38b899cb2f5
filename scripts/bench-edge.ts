import { execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { access, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { Agent, request } from "node:https";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { IDENTITY_KEY_FILE, type IdentityKey, renderIdentityKey } from "../infra/render/edge-js.js";
import { type EdgeLayout, localLayout } from "../infra/render/layout.js";
import { renderNginx } from "../infra/render/nginx.js";
import { type RateLimit, rateLimitSchema, wafSchema } from "../infra/render/settings.js";
import {
  hostLayout,
  nginxVersion,
  type RunningNginx,
  startNginx,
  writeSelfSignedCertificate,
} from "./lib/nginx.js";
import {
  freePort,
  requireBinary,
  type Started,
  startProcess,
  stopAll,
  waitForPort,
} from "./lib/processes.js";
import { dirInRoot, trixieRoot } from "./lib/trixie-root.js";

// `npm run bench:edge`: the edge's cost, measured side by side in one run through nginx TLS on loopback with wrk.
//   1. POST /v1/messages (small JSON) to a trivial upstream, WAF off;
//   2. the same, WAF on (the rules the VM runs);
//   2b. the same, ModSecurity on with no rule at all: the ceiling of WAF on / WAF off for any rule selection;
//       then the CPU per request of nginx, the upstream and wrk for 1, 2 and 2b, and the ratios they imply on a
//       CPU-bound machine (far less sensitive to what else runs than req/s);
//   3. POST /v1/messages through the whole edge (WAF on) to the real gateway (sandbox transport, SQLite);
//   4. a flood: one IP at 20x its limit while 50 other clients, each at 80 % of its limit, keep sending.
// Runs 1-3 use rate limits high enough that nothing is refused: they measure the WAF and the upstream, not the
// limiter. Run 4 uses the default limits, as on the VM.
// nginx, ModSecurity and CRS are the VM's (Debian 13), from the cached trixie root (scripts/lib/trixie-root.ts),
// run under chroot; wrk, the upstream and the gateway run on the host. The working directory is 0755 (dirInRoot):
// a 0700 mkdtemp directory made nginx's workers (`nobody`) log a `[crit] stat()` error on every request.

const run = promisify(execFile);
const DOMAIN = "gateway.test";
const DURATION_S = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const MESSAGE = JSON.stringify({
  type: "text",
  to: "+15551234567",
  text: { body: "Your order 1234 has shipped. Track it in the app!" },
});

interface WrkResult {
  readonly requestsPerSecond: number;
  readonly p99Ms: number;
  readonly non2xx: number;
  readonly requests: number;
  /** CPU time (user + system) wrk itself spent per request. */
  readonly clientCpuUsPerRequest: number;
  /** CPU time nginx's workers spent per request during the run (user + system), when measured. */
  readonly nginxCpuUsPerRequest?: number;
  /** CPU time the upstream spent per request, when measured. */
  readonly upstreamCpuUsPerRequest?: number;
}

/** CPU per request of everything a run needs (client, nginx, upstream): on a saturated machine, req/s follows it. */
const totalCpuUs = (r: WrkResult) =>
  r.clientCpuUsPerRequest + (r.nginxCpuUsPerRequest ?? 0) + (r.upstreamCpuUsPerRequest ?? 0);

/** user + system CPU ticks of a master's worker processes, from /proc (Linux). */
async function workerTicks(masterPid: number): Promise<number> {
  const children = await readFile(`/proc/${masterPid}/task/${masterPid}/children`, "utf8").catch(() => "");
  let ticks = 0;
  for (const pid of children.trim().split(/\s+/).filter(Boolean)) {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
  }
  return ticks;
}

const TICKS_PER_SECOND = 100;

/** user + system CPU ticks of one process, from /proc (Linux). */
async function processTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
}

/** Cumulative CPU microseconds of an upstream: this process (the trivial upstream) or the gateway's pid. */
type UpstreamCpu = () => Promise<number>;
const ownCpu: UpstreamCpu = async () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
const pidCpu =
  (pid: number): UpstreamCpu =>
  async () =>
    ((await processTicks(pid)) / TICKS_PER_SECOND) * 1e6;

/**
 * wrk against an edge, also measuring the CPU per request of its workers and of the upstream: unlike req/s,
 * these depend far less on other load on the machine.
 */
async function wrkEdge(
  edge: RunningNginx,
  path: string,
  luaScript: string,
  upstreamCpu: UpstreamCpu,
): Promise<WrkResult> {
  const before = await workerTicks(edge.pid);
  const upstreamBefore = await upstreamCpu();
  const result = await wrk(url(edge.layout, path), luaScript);
  const upstreamUs = (await upstreamCpu()) - upstreamBefore;
  const ticks = (await workerTicks(edge.pid)) - before;
  return {
    ...result,
    nginxCpuUsPerRequest: (ticks / TICKS_PER_SECOND / result.requests) * 1e6,
    upstreamCpuUsPerRequest: upstreamUs / result.requests,
  };
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : unit === "m" ? n * 60_000 : n;
}

async function wrk(
  url: string,
  luaScript: string,
  seconds = DURATION_S,
  connections = CONNECTIONS,
): Promise<WrkResult> {
  // bash's `times` reports the CPU its child (wrk) used: the client's share of the machine.
  const { stdout } = await run(
    "bash",
    [
      "-c",
      'wrk "$@" && times',
      "wrk",
      "-t2",
      `-c${connections}`,
      `-d${seconds}s`,
      "--latency",
      "-s",
      luaScript,
      url,
    ],
    { maxBuffer: 1 << 20 },
  );
  const times = [...stdout.matchAll(/(\d+)m([\d.]+)s (\d+)m([\d.]+)s/g)].at(-1);
  const clientCpuS = times
    ? Number(times[1]) * 60 + Number(times[2]) + Number(times[3]) * 60 + Number(times[4])
    : Number.NaN;
  const rps = stdout.match(/Requests\/sec:\s+([\d.]+)/);
  const p99 = stdout.match(/^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m);
  const non2xx = stdout.match(/Non-2xx or 3xx responses:\s+(\d+)/);
  const requests = stdout.match(/(\d+) requests in/);
  if (!rps || !p99 || !requests) throw new Error(`could not read wrk's output:\n${stdout}`);
  return {
    requests: Number(requests[1]),
    requestsPerSecond: Number(rps[1]),
    p99Ms: toMs(p99[1] ?? "0", p99[2] ?? "ms"),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    clientCpuUsPerRequest: (clientCpuS / Number(requests[1])) * 1e6,
  };
}

async function writeLua(
  dir: string,
  name: string,
  headers: Record<string, string>,
  body = MESSAGE,
): Promise<string> {
  const path = join(dir, name);
  const lines = [
    'wrk.method = "POST"',
    // A real client names the API's host; a numeric Host is itself a CRS finding (920350) and gets audited.
    `wrk.headers["Host"] = "${DOMAIN}"`,
    `wrk.body = ${JSON.stringify(body)}`,
    ...Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`),
  ];
  await writeFile(path, `${lines.join("\n")}\n`, { mode: 0o600 });
  return path;
}

function trivialUpstream(): Server {
  return createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(202, { "content-type": "application/json" });
      res.end('{"id":"01J00000000000000000000000","status":"queued"}');
    });
  });
}

/** The trixie root and the run's working directory in it, as the host and as nginx see it. */
interface Workdir {
  readonly root: string;
  readonly host: string;
  readonly inside: string;
  readonly version: string;
}

async function startEdge(
  work: Workdir,
  name: string,
  upstreamPort: number,
  wafEnabled: boolean,
  rateLimit: RateLimit,
  unlimited = false,
  engineOnly = false,
  identity?: IdentityKey,
) {
  const layout = localLayout(join(work.inside, name), {
    http: await freePort(),
    https: await freePort(),
    upstream: upstreamPort,
  });
  const files = renderNginx({
    domain: DOMAIN,
    rateLimit,
    waf: wafSchema.parse({ enabled: wafEnabled }),
    layout,
    nginxVersion: work.version,
    identity: identity ? { keyFile: join(layout.confDir, IDENTITY_KEY_FILE) } : undefined,
  });
  if (identity) files[IDENTITY_KEY_FILE] = renderIdentityKey(identity);
  if (unlimited) {
    // Stack config caps rates at 10,000 r/s, which the WAF-off run exceeds on loopback: lift the per-IP and
    // per-token rates in the rendered text so runs 1-3 measure the WAF and the upstream, never a 429.
    const conf = files["nginx.conf"] ?? "";
    files["nginx.conf"] = conf
      .replace(/rate=10000r\/s;/g, "rate=10000000r/s;")
      .replace(/burst=10000 /g, "burst=1000000 ");
  }
  if (engineOnly) {
    // ModSecurity on, wagate's engine settings, not one rule: what libmodsecurity costs before any rule runs.
    for (const [name, text] of Object.entries(files))
      if (name.startsWith("modsecurity.d/"))
        files[name] = text.slice(0, text.indexOf("# JSON bodies go through"));
  }
  await writeSelfSignedCertificate(hostLayout(layout, work.root), DOMAIN);
  return startNginx({ layout, files, root: work.root });
}

const url = (layout: EdgeLayout, path: string) => `https://127.0.0.1:${layout.httpsPort}${path}`;

/** An HS256 JWT for the gateway, signed here so the benchmark needs no operator command. */
function mintToken(secret: string, scope: string): string {
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({
    sub: "bench",
    scope,
    iss: "wagate",
    aud: "wagate",
    iat: now,
    exp: now + 3600,
    jti: randomBytes(8).toString("hex"),
  });
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

async function startGateway(
  dir: string,
): Promise<{ gateway: Started; port: number; token: string } | string> {
  const main = join(process.cwd(), "gateway", "src", "main.ts");
  if (
    !(await access(main).then(
      () => true,
      () => false,
    ))
  )
    return "gateway/src/main.ts does not exist yet";
  const secret = randomBytes(32).toString("hex");
  const port = await freePort();
  const gateway = startProcess("gateway", process.execPath, ["--import", "tsx", main], {
    env: {
      ...process.env,
      API_SECRET: secret,
      HOST: "127.0.0.1",
      PORT: String(port),
      DATABASE_PATH: join(dir, "gateway.sqlite"),
      WHATSAPP_TRANSPORT: "sandbox",
      SANDBOX_OUTBOX_PATH: join(dir, "outbox.jsonl"),
      LOG_LEVEL: "warn",
    },
    logFile: join(dir, "gateway.log"),
  });
  try {
    await Promise.race([
      waitForPort(port, "127.0.0.1", 20_000),
      gateway.exited.then((code) => {
        throw new Error(`exited with ${code}`);
      }),
    ]);
  } catch (error) {
    await gateway.stop();
    const log = await readFile(join(dir, "gateway.log"), "utf8").catch(() => "");
    return `the gateway did not start (${(error as Error).message}): ${log.trim().split("\n").slice(-3).join(" | ")}`;
  }
  return { gateway, port, token: mintToken(secret, "messages:send messages:read") };
}

/** One client IP sending `perSecond` small POSTs, paced, for `seconds`: counts 2xx answers and latencies. */
async function pacedClient(edge: RunningNginx, localAddress: string, perSecond: number, seconds: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 4, localAddress, rejectUnauthorized: false });
  const latencies: number[] = [];
  let ok = 0;
  const refused: string[] = [];
  const one = () =>
    new Promise<void>((resolve) => {
      const started = performance.now();
      const req = request(
        url(edge.layout, "/v1/messages"),
        {
          method: "POST",
          agent,
          headers: { "content-type": "application/json", host: DOMAIN },
          servername: DOMAIN,
        },
        (res) => {
          res.resume();
          res.on("end", () => {
            latencies.push(performance.now() - started);
            if ((res.statusCode ?? 0) < 300) ok++;
            else refused.push(String(res.statusCode));
            resolve();
          });
        },
      );
      req.on("error", (error: NodeJS.ErrnoException) => {
        refused.push(error.code ?? "error");
        resolve();
      });
      req.end(MESSAGE);
    });
  const pending: Promise<void>[] = [];
  const start = performance.now();
  for (let i = 0; i < perSecond * seconds; i++) {
    const due = start + (i * 1000) / perSecond;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    pending.push(one());
  }
  await Promise.all(pending);
  agent.destroy();
  return { ok, refused, latencies };
}

async function victims(edge: RunningNginx, clients: number, perSecond: number, seconds: number) {
  const results = await Promise.all(
    Array.from({ length: clients }, (_, i) => pacedClient(edge, `127.0.1.${i + 1}`, perSecond, seconds)),
  );
  const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const ok = results.reduce((n, r) => n + r.ok, 0);
  const counts = new Map<string, number>();
  for (const kind of results.flatMap((r) => r.refused)) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  const refused = counts.size ? [...counts].map(([k, n]) => `${n}x ${k}`).join(", ") : "none";
  return {
    okPerSecond: ok / seconds,
    refused,
    p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? Number.NaN,
  };
}

const fmt = (r: WrkResult) =>
  `${r.requestsPerSecond.toFixed(0).padStart(7)} req/s   p99 ${r.p99Ms.toFixed(2).padStart(7)} ms${r.non2xx ? `   (${r.non2xx} of ${r.requests} non-2xx!)` : ""}`;

const cpuRow = (label: string, r: WrkResult) =>
  `${label.padEnd(28)}${[
    r.nginxCpuUsPerRequest ?? 0,
    r.upstreamCpuUsPerRequest ?? 0,
    r.clientCpuUsPerRequest,
    totalCpuUs(r),
  ]
    .map((n) => n.toFixed(0).padStart(8))
    .join("  ")}`;

async function main(): Promise<void> {
  await requireBinary("wrk", "wrk");
  const root = await trixieRoot();
  const [dir, inside] = await dirInRoot(root, "wagate-bench-edge-");
  const work: Workdir = { root, host: dir, inside, version: await nginxVersion(root) };
  const processes: Started[] = [];
  const upstream = trivialUpstream();
  let edgeRatios = "";
  try {
    const upstreamPort = await freePort();
    await new Promise<void>((resolve) => upstream.listen(upstreamPort, "127.0.0.1", resolve));
    const open = rateLimitSchema.parse({
      perIp: { rate: 10_000, burst: 10_000 },
      perToken: { rate: 10_000, burst: 10_000 },
      webhookPerIp: { rate: 10_000, burst: 10_000 },
    });
    const plain = await startEdge(work, "waf-off", upstreamPort, false, open, true);
    processes.push(plain);
    const guarded = await startEdge(work, "waf-on", upstreamPort, true, open, true);
    processes.push(guarded);
    const lua = await writeLua(dir, "post.lua", { "Content-Type": "application/json" });

    console.log(
      `edge benchmark: nginx ${work.version} (Debian 13 root), wrk -t2 -c${CONNECTIONS} ${DURATION_S}s per run, TLS on loopback, ${DOMAIN}`,
    );
    // Warm both (TLS session cache, upstream keepalive, CRS regex JIT) before measuring.
    await wrk(url(plain.layout, "/v1/messages"), lua, 2);
    await wrk(url(guarded.layout, "/v1/messages"), lua, 2);
    const off = await wrkEdge(plain, "/v1/messages", lua, ownCpu);
    console.log(`1. trivial upstream, WAF off   ${fmt(off)}`);
    const on = await wrkEdge(guarded, "/v1/messages", lua, ownCpu);
    console.log(`2. trivial upstream, WAF on    ${fmt(on)}`);
    const wafRatio = on.requestsPerSecond / off.requestsPerSecond;
    console.log(
      `   WAF on / WAF off = ${wafRatio.toFixed(2)} (target >= 0.50; Debian's CRS as shipped: 0.16)`,
    );
    // The floor: ModSecurity switched on with no rule at all. Whatever rules are chosen, WAF on / WAF off cannot
    // exceed this run's ratio.
    const engine = await startEdge(work, "engine", upstreamPort, true, open, true, true);
    processes.push(engine);
    await wrk(url(engine.layout, "/v1/messages"), lua, 2);
    const bare = await wrkEdge(engine, "/v1/messages", lua, ownCpu);
    await stopAll([engine]);
    console.log(`2b. ModSecurity, no rules      ${fmt(bare)}`);
    console.log(
      `   no rules / WAF off = ${(bare.requestsPerSecond / off.requestsPerSecond).toFixed(2)} (the most any rule selection can reach)`,
    );
    console.log("   CPU per request (µs)          nginx   upstream   client   total");
    for (const [label, r] of [
      ["WAF off", off],
      ["ModSecurity, no rules", bare],
      ["WAF on", on],
    ] as const)
      console.log(`   ${cpuRow(label, r)}`);
    console.log(
      `   CPU-bound ratios (total CPU per request; far less sensitive to other load than req/s): WAF on / off = ${(totalCpuUs(off) / totalCpuUs(on)).toFixed(2)}, no rules / off = ${(totalCpuUs(off) / totalCpuUs(bare)).toFixed(2)}`,
    );

    // The edge's three ratios (issue 14), medians of interleaved rounds, each against WAF off with the same request:
    // authenticated = the small JSON API request with a valid token through identity first (the token verified in
    // njs, then the edge's positive model: no ModSecurity at all, see VERIFIED_CHECKS); anonymous = a small JSON POST to
    // Meta's webhook route without a signature, through full CRS; no-rules = ModSecurity on without any rule.
    const key: IdentityKey = {
      secret: randomBytes(32).toString("hex"),
      issuer: "wagate",
      audience: "wagate",
      toleranceSeconds: 30,
    };
    const verifying = await startEdge(work, "identity", upstreamPort, true, open, true, false, key);
    processes.push(verifying);
    const engineEdge = await startEdge(work, "engine-ratios", upstreamPort, true, open, true, true);
    processes.push(engineEdge);
    const authLua = await writeLua(dir, "post-verified.lua", {
      "Content-Type": "application/json",
      Authorization: `Bearer ${mintToken(key.secret, "messages:send")}`,
    });
    const webhookLua = await writeLua(
      dir,
      "post-webhook.lua",
      { "Content-Type": "application/json" },
      JSON.stringify({ object: "whatsapp_business_account", entry: [{ id: "1", changes: [] }] }),
    );
    const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
    const seconds = Math.max(2, Math.round(DURATION_S / 2));
    const ratios: Record<"authenticated" | "anonymous" | "noRules", number[]> = {
      authenticated: [],
      anonymous: [],
      noRules: [],
    };
    for (const [edge, path, script] of [
      [verifying, "/v1/messages", authLua],
      [plain, "/v1/messages", authLua],
      [guarded, "/webhooks/whatsapp", webhookLua],
      [plain, "/webhooks/whatsapp", webhookLua],
      [engineEdge, "/v1/messages", lua],
    ] as const) {
      const warm = await wrk(url(edge.layout, path), script, 1);
      if (warm.non2xx)
        throw new Error(`warm-up to ${path} answered ${warm.non2xx} non-2xx of ${warm.requests}`);
    }
    for (let round = 0; round < rounds; round++) {
      const offAuth = await wrk(url(plain.layout, "/v1/messages"), authLua, seconds);
      const auth = await wrk(url(verifying.layout, "/v1/messages"), authLua, seconds);
      const offHook = await wrk(url(plain.layout, "/webhooks/whatsapp"), webhookLua, seconds);
      const hook = await wrk(url(guarded.layout, "/webhooks/whatsapp"), webhookLua, seconds);
      const offPlain = await wrk(url(plain.layout, "/v1/messages"), lua, seconds);
      const none = await wrk(url(engineEdge.layout, "/v1/messages"), lua, seconds);
      ratios.authenticated.push(auth.requestsPerSecond / offAuth.requestsPerSecond);
      ratios.anonymous.push(hook.requestsPerSecond / offHook.requestsPerSecond);
      ratios.noRules.push(none.requestsPerSecond / offPlain.requestsPerSecond);
      console.log(
        `   round ${round + 1}: authenticated ${auth.requestsPerSecond.toFixed(0)}/${offAuth.requestsPerSecond.toFixed(0)}, anonymous ${hook.requestsPerSecond.toFixed(0)}/${offHook.requestsPerSecond.toFixed(0)}, no rules ${none.requestsPerSecond.toFixed(0)}/${offPlain.requestsPerSecond.toFixed(0)} req/s${auth.non2xx || hook.non2xx ? ` (non-2xx: ${auth.non2xx} authenticated, ${hook.non2xx} anonymous)` : ""}`,
      );
    }
    await stopAll([verifying, engineEdge]);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
    edgeRatios = `edge ratios: authenticated=${median(ratios.authenticated).toFixed(2)} anonymous=${median(ratios.anonymous).toFixed(2)} no-rules=${median(ratios.noRules).toFixed(2)}`;

    if (process.env.BENCH_SKIP_GATEWAY !== "1") {
      const started = await startGateway(dir);
      if (typeof started === "string") {
        console.log(`3. real gateway: not measured: ${started}`);
      } else {
        processes.push(started.gateway);
        const edge = await startEdge(work, "gateway", started.port, true, open, true);
        processes.push(edge);
        const authLua = await writeLua(dir, "post-auth.lua", {
          "Content-Type": "application/json",
          Authorization: `Bearer ${started.token}`,
        });
        await wrk(url(edge.layout, "/v1/messages"), authLua, 2);
        const real = await wrkEdge(edge, "/v1/messages", authLua, pidCpu(started.gateway.pid));
        console.log(`3. real gateway, WAF on        ${fmt(real)}`);
        console.log(
          `   real gateway / trivial upstream (both WAF on) = ${(real.requestsPerSecond / on.requestsPerSecond).toFixed(2)} (target >= 0.80)`,
        );
        console.log(`   ${cpuRow("real gateway, WAF on", real)}`);
        console.log(
          `   CPU-bound ratio real gateway / trivial upstream = ${(totalCpuUs(on) / totalCpuUs(real)).toFixed(2)}`,
        );
        await stopAll([edge, started.gateway]);
      }
    }

    if (process.env.BENCH_SKIP_FLOOD !== "1") {
      const limits = rateLimitSchema.parse({});
      const edge = await startEdge(work, "flood", upstreamPort, true, limits);
      processes.push(edge);
      const clients = 50;
      const pace = Math.floor(limits.perIp.rate * 0.8);
      const seconds = Math.max(5, Math.min(DURATION_S, 10));
      const alone = await victims(edge, clients, pace, seconds);
      const [flooded, flood] = await Promise.all([
        victims(edge, clients, pace, seconds),
        wrk(url(edge.layout, "/v1/messages"), lua, seconds, 16),
      ]);
      const floodAttempts = flood.requestsPerSecond / limits.perIp.rate;
      console.log(
        `4. flood: one IP at ${flood.requestsPerSecond.toFixed(0)} req/s (${floodAttempts.toFixed(0)}x its limit of ${limits.perIp.rate} r/s), ${clients} other clients at ${pace} r/s each`,
      );
      console.log(
        `   others alone         ${alone.okPerSecond.toFixed(0)} ok/s   p99 ${alone.p99Ms.toFixed(2)} ms   refused ${alone.refused}`,
      );
      console.log(
        `   others during flood  ${flooded.okPerSecond.toFixed(0)} ok/s   p99 ${flooded.p99Ms.toFixed(2)} ms   refused ${flooded.refused}`,
      );
      console.log(
        `   throughput kept = ${(flooded.okPerSecond / alone.okPerSecond).toFixed(2)} (target >= 0.80); flood ${floodAttempts >= 20 ? "reached" : "did NOT reach"} 20x the limit`,
      );
    }
  } finally {
    await stopAll(processes);
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  }
  // The last line: the figures issue 14 asks for.
  console.log(edgeRatios);
}

await main();
