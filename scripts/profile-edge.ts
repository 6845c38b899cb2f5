import { execFile } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { Agent, request } from "node:https";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { IDENTITY_KEY_FILE, type IdentityKey, renderIdentityKey } from "../infra/render/edge-js.js";
import { layoutDirectories, localLayout } from "../infra/render/layout.js";
import { renderNginx } from "../infra/render/nginx.js";
import { NGINX_ENVIRONMENT } from "../infra/render/nginx-allocator.js";
import { rateLimitSchema, wafSchema } from "../infra/render/settings.js";
import { hostLayout, nginxVersion, writeSelfSignedCertificate } from "./lib/nginx.js";
import { freePort, requireBinary, startProcess, waitForPort } from "./lib/processes.js";
import { dirInRoot, trixieRoot } from "./lib/trixie-root.js";

// `npm run profile:edge`: CPU instructions nginx executes per request, counted by valgrind's callgrind on a
// single nginx process (`master_process off`), for a fixed number of identical requests over one keep-alive TLS
// connection. Unlike req/s, the count does not depend on what else runs on the machine, so two configurations
// can be compared (A/B) on a loaded box. Variants (PROFILE_VARIANTS=a,b,...; default: the first four):
//   waf-off      the rendered edge without ModSecurity (the base);
//   engine-only  ModSecurity on with wagate's engine settings but no rule at all (the engine's own floor);
//   own-rules    engine + wagate's rules, no CRS file;
//   waf-on       the rendered edge as the VM runs it;
//   identity-only  the token verified at the edge (njs), no WAF;
//   verified     identity first with the WAF on, as the VM renders it: a verified /v1/ request meets no ModSecurity
//                (the edge's positive model); with PROFILE_REQUEST=webhook, the anonymous request through full CRS;
//   crs:920,941  wagate's rules with only those CRS files (901 and 949 always): bisects CRS's cost by family
//                (PROFILE_IDENTITY=1: as rendered with identity first, the rules anonymous traffic meets);
//   debug        waf-on with ModSecurity's debug log at level 9 (rule by rule: targets, transformations).
// PROFILE_DROP=<regex> removes the rules file's lines that match it (e.g. "^SecRuleUpdateTargetById" prices the
// configuration-time exclusions); PROFILE_APPEND=<file> appends ModSecurity directives to the rules file of every WAF variant, for A/B of one
// change without editing the renderer (e.g. "SecRuleRemoveById 920450" prices one rule).
// With waf-off, engine-only and waf-on measured, it also prints the WAF-on / WAF-off req/s ratio the counts imply,
// calibrated by bench:edge's own no-rules ratio (PROFILE_ENGINE_RATIO, default 0.65).
// nginx runs with the VM's environment (LD_PRELOAD of its allocator, infra/render/nginx-allocator.ts);
// PROFILE_ENV="K=V ..." adds to it or overrides it (e.g. LD_PRELOAD= for glibc's malloc).
// Counts are user-space instructions only: the kernel's share (TCP on loopback, syscalls) is not in them.
// PROFILE_REQUESTS (default 300) requests are counted after 30 warm-up requests (TLS handshake, regex JIT).
// PROFILE_TOP=n prints the n most expensive functions (inclusive) of each variant; PROFILE_KEEP=1 keeps the
// callgrind files for callgrind_annotate.
// nginx, ModSecurity, CRS and valgrind are the VM's (Debian 13), from the cached trixie root
// (scripts/lib/trixie-root.ts), run under chroot; the client and upstream run on the host.

const run = promisify(execFile);
const DOMAIN = "gateway.test";
const REQUESTS = Number(process.env.PROFILE_REQUESTS ?? 300);
const WARMUP = 30;
const TOP = Number(process.env.PROFILE_TOP ?? 0);
// PROFILE_REQUEST=webhook prices bench:edge's anonymous request instead (a small JSON POST to Meta's webhook route
// without a signature: full CRS), with bench's headers.
const WEBHOOK = process.env.PROFILE_REQUEST === "webhook";
const PATH = WEBHOOK ? "/webhooks/whatsapp" : "/v1/messages";
const MESSAGE = WEBHOOK
  ? JSON.stringify({ object: "whatsapp_business_account", entry: [{ id: "1", changes: [] }] })
  : JSON.stringify({
      type: "text",
      to: "+15551234567",
      text: { body: "Your order 1234 has shipped. Track it in the app!" },
    });
// A bearer token like the gateway's, signed with PROFILE_KEY (the identity variants verify it; the others only
// read it as a header).
const PROFILE_KEY: IdentityKey = {
  secret: "profile-edge-key-profile-edge-key-profile-edge-key-0000",
  issuer: "wagate",
  audience: "wagate",
  toleranceSeconds: 30,
};
const AUTHORIZATION = (() => {
  const head = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString("base64url");
  const body = Buffer.from(
    '{"sub":"bench","scope":"messages:send","iss":"wagate","aud":"wagate","exp":4102444800,"jti":"profile-1"}',
  ).toString("base64url");
  const sig = createHmac("sha256", PROFILE_KEY.secret).update(`${head}.${body}`).digest("base64url");
  return `Bearer ${head}.${body}.${sig}`;
})();

// PROFILE_HEADERS=bench sends what bench:edge's wrk script sends (Host, Content-Type; Node adds Connection), so the
// counts price exactly the request whose req/s ratio the benchmark reports; by default, an API client's request.
const HEADERS: Record<string, string> =
  process.env.PROFILE_HEADERS === "bench" || WEBHOOK
    ? { host: DOMAIN, "content-type": "application/json" }
    : {
        host: DOMAIN,
        "content-type": "application/json",
        "user-agent": "wagate-profile/1",
        accept: "application/json",
        authorization: AUTHORIZATION,
      };

/** PROFILE_ENV="K=V K2=V2": extra environment for nginx (e.g. GLIBC_TUNABLES), for A/B of allocator settings. */
function extraEnv(): Record<string, string> {
  return Object.fromEntries(
    (process.env.PROFILE_ENV ?? "")
      .split(" ")
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
}

const DEBUG_LOG_PLACEHOLDER = "@DEBUG_LOG@";

type Files = Record<string, string>;

interface Variant {
  readonly waf: boolean;
  /** Identity first: the edge verifies the token (njs) and leaves a verified /v1/ body to the gateway. */
  readonly identity?: boolean;
  /** Changes the rendered ModSecurity rules file. */
  readonly rules?: (text: string) => string;
}

/** The engine part of the rules file: everything before wagate's first rule. */
const engineOnly = (text: string) => text.slice(0, text.indexOf("# JSON bodies go through"));
const withoutCrs = (text: string) =>
  text
    .split("\n")
    .filter((l) => !l.startsWith("Include ") && !/^SecRule(UpdateTarget|Remove)ById/.test(l))
    .join("\n");

const VARIANTS: Record<string, Variant> = {
  "waf-off": { waf: false },
  "engine-only": { waf: true, rules: engineOnly },
  "own-rules": { waf: true, rules: withoutCrs },
  "waf-on": { waf: true },
  // Identity first: the token verified in njs; with the WAF on, only anonymous routes run ModSecurity.
  "identity-only": { waf: false, identity: true },
  verified: { waf: true, identity: true },
  // One request's rule-by-rule trace (ModSecurity debug level 9) in <dir>/debug/modsec_debug.log, with PROFILE_KEEP=1.
  debug: {
    waf: true,
    rules: (text) =>
      text.replace(/^SecDebugLogLevel 0$/m, `SecDebugLog ${DEBUG_LOG_PLACEHOLDER}\nSecDebugLogLevel 9`),
  },
};

function post(agent: Agent, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path: PATH,
        method: "POST",
        agent,
        servername: DOMAIN,
        headers: HEADERS,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end(MESSAGE);
  });
}

async function send(agent: Agent, port: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const status = await post(agent, port);
    if (status !== 202) throw new Error(`request answered ${status}, expected 202 from the trivial upstream`);
  }
}

/** Total instructions (Ir) of a callgrind dump, and its top functions by inclusive cost when asked. */
async function readDump(path: string): Promise<{ ir: number; top: string }> {
  const text = await readFile(path, "utf8");
  const totals = text.match(/^(?:summary|totals):\s+(\d+)/m);
  if (!totals) throw new Error(`no totals in ${path}`);
  let top = "";
  if (TOP > 0) {
    const { stdout } = await run("callgrind_annotate", ["--inclusive=yes", path], { maxBuffer: 64 << 20 });
    top = stdout
      .split("\n")
      .filter((l) => /^\s*[\d,]+ \(/.test(l))
      .slice(0, TOP)
      .join("\n");
  }
  return { ir: Number(totals[1]), top };
}

/** `crs:911,920`: wagate's rules with only those CRS files (901 and 949 always), to bisect CRS's cost. */
function variantNamed(name: string): Variant | undefined {
  const files = name.match(/^crs:([\d,]+)$/)?.[1]?.split(",");
  if (!files) return VARIANTS[name];
  const keep = new Set(["901", "949", ...files]);
  return {
    waf: true,
    identity: process.env.PROFILE_IDENTITY === "1",
    rules: (text) =>
      text
        .split("\n")
        .filter((l) => !l.startsWith("Include ") || keep.has(l.match(/REQUEST-(\d{3})-/)?.[1] ?? ""))
        .join("\n"),
  };
}

/** Where the trixie root is, and the run's working directory inside it (as the host and as nginx see it). */
interface Workdir {
  readonly root: string;
  readonly host: string;
  readonly inside: string;
  readonly version: string;
}

async function profile(name: string, variant: Variant, work: Workdir, upstreamPort: number) {
  const slug = name.replace(/[^a-z0-9-]/gi, "_");
  const layout = localLayout(join(work.inside, slug), {
    http: await freePort(),
    https: await freePort(),
    upstream: upstreamPort,
  });
  const open = rateLimitSchema.parse({
    perIp: { rate: 10_000, burst: 10_000 },
    perToken: { rate: 10_000, burst: 10_000 },
  });
  const files: Files = renderNginx({
    domain: DOMAIN,
    rateLimit: open,
    waf: wafSchema.parse({ enabled: variant.waf }),
    layout,
    workerProcesses: 1,
    nginxVersion: work.version,
    identity: variant.identity ? { keyFile: join(layout.confDir, IDENTITY_KEY_FILE) } : undefined,
  });
  if (variant.identity) files[IDENTITY_KEY_FILE] = renderIdentityKey(PROFILE_KEY);
  const host = hostLayout(layout, work.root);
  for (const [file, text] of Object.entries(files))
    if (file.endsWith(".conf") && file !== "nginx.conf" && variant.rules)
      files[file] = variant
        .rules(text)
        .replace(DEBUG_LOG_PLACEHOLDER, join(layout.logDir, "modsec_debug.log"));
  if (variant.waf && process.env.PROFILE_DROP) {
    const drop = new RegExp(process.env.PROFILE_DROP);
    for (const file of Object.keys(files))
      if (file.endsWith(".conf") && file !== "nginx.conf")
        files[file] = (files[file] ?? "")
          .split("\n")
          .filter((l) => !drop.test(l))
          .join("\n");
  }
  if (variant.waf && process.env.PROFILE_APPEND) {
    const extra = await readFile(process.env.PROFILE_APPEND, "utf8");
    for (const file of Object.keys(files))
      if (file.endsWith(".conf") && file !== "nginx.conf") files[file] += `\n${extra}\n`;
  }
  for (const dir of layoutDirectories(host)) await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const [file, text] of Object.entries(files)) {
    const path = join(host.confDir, file);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, text);
  }
  await writeSelfSignedCertificate(host, DOMAIN);
  const out = join(work.inside, `${slug}.callgrind`);
  // valgrind needs /proc: nginx runs in a mount namespace of its own with /proc mounted in the root (gone with
  // the process, nothing to unmount), and callgrind_control joins that namespace.
  const nginx = startProcess(
    "nginx",
    "unshare",
    [
      "--mount",
      "--propagation",
      "private",
      "--",
      "sh",
      "-c",
      'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"',
      work.root,
      "valgrind",
      "--tool=callgrind",
      "--instr-atstart=no",
      `--callgrind-out-file=${out}`,
      "nginx",
      "-p",
      layout.prefix,
      "-c",
      join(layout.confDir, "nginx.conf"),
      "-e",
      join(layout.logDir, "error.log"),
      "-g",
      "daemon off; master_process off;",
    ],
    {
      logFile: join(work.host, `${slug}.valgrind.log`),
      // The VM's environment for nginx (its allocator: infra/render/nginx-allocator.ts), then PROFILE_ENV.
      env: { ...process.env, ...NGINX_ENVIRONMENT, ...extraEnv() },
    },
  );
  try {
    // nginx that fails to start (a rules error, a port taken meanwhile) must fail the run now, not after 3 minutes.
    await Promise.race([
      waitForPort(layout.httpsPort, "127.0.0.1", 180_000),
      nginx.exited.then(async (code) => {
        const log = await readFile(join(work.host, `${slug}.valgrind.log`), "utf8").catch(() => "");
        throw new Error(
          `nginx (${name}) exited with ${code} before listening:\n${log.split("\n").slice(-8).join("\n")}`,
        );
      }),
    ]);
    const agent = new Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });
    await send(agent, layout.httpsPort, WARMUP);
    // sh and chroot exec valgrind: the child's pid is valgrind's; callgrind_control talks to it inside the root.
    const inRoot = (command: string, args: string[]) =>
      run("nsenter", ["-t", String(nginx.pid), "-m", "--", "chroot", work.root, command, ...args], {
        maxBuffer: 64 << 20,
      });
    await inRoot("callgrind_control", ["-z", String(nginx.pid)]);
    await inRoot("callgrind_control", ["-i", "on", String(nginx.pid)]);
    await send(agent, layout.httpsPort, REQUESTS);
    await inRoot("callgrind_control", ["-d", String(nginx.pid)]);
    agent.destroy();
    let dump = "";
    for (let i = 0; i < 50 && !dump; i++) {
      const found = (await readdir(work.host)).find((f) => f.startsWith(`${slug}.callgrind.`));
      if (found) dump = join(work.host, found);
      else await sleep(100);
    }
    if (!dump) throw new Error(`callgrind wrote no dump for ${name}`);
    await sleep(200);
    return await readDump(dump);
  } finally {
    await nginx.stop();
  }
}

async function main(): Promise<void> {
  const trixie = await trixieRoot();
  if (TOP > 0) await requireBinary("callgrind_annotate", "valgrind");
  const names = (process.env.PROFILE_VARIANTS ?? "waf-off,engine-only,own-rules,waf-on").split(",");
  const [hostDir, inside] = await dirInRoot(trixie, "wagate-profile-edge-");
  const work: Workdir = { root: trixie, host: hostDir, inside, version: await nginxVersion(trixie) };
  const upstream = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(202, { "content-type": "application/json" });
      res.end('{"id":"01J00000000000000000000000","status":"queued"}');
    });
  });
  try {
    const upstreamPort = await freePort();
    await new Promise<void>((resolve) => upstream.listen(upstreamPort, "127.0.0.1", resolve));
    console.log(
      `edge profile (nginx ${work.version}, Debian 13 root): ${REQUESTS} POST ${PATH} over one TLS keep-alive connection, callgrind; headers: ${Object.keys(HEADERS).join(", ")}`,
    );
    const results: Record<string, number> = {};
    for (const name of names) {
      const variant = variantNamed(name);
      if (!variant) throw new Error(`PROFILE_VARIANTS: unknown variant ${name}`);
      const { ir, top } = await profile(name, variant, work, upstreamPort);
      results[name] = ir / REQUESTS;
      const base = results["waf-off"];
      const vsBase = base
        ? `   ${(ir / REQUESTS / base).toFixed(1)}x waf-off (nginx user space only: not the kernel, client or upstream)`
        : "";
      console.log(
        `${name.padEnd(12)} ${(ir / REQUESTS / 1000).toFixed(0).padStart(8)} k instructions/request${vsBase}`,
      );
      if (top) console.log(top);
    }
    const [off, engine, on] = [results["waf-off"], results["engine-only"], results["waf-on"]];
    if (off && engine && on && engine > off) {
      // What the counts imply for bench:edge's req/s ratio on a CPU-bound machine: everything else a request costs
      // (kernel, TLS, client, upstream) calibrated from bench:edge's side-by-side run of ModSecurity without rules.
      const engineRatio = Number(process.env.PROFILE_ENGINE_RATIO ?? 0.65);
      const rest = (engineRatio / (1 - engineRatio)) * (engine - off);
      console.log(
        `implied WAF-on / WAF-off throughput ~${(rest / (rest + on - off)).toFixed(2)} (if ModSecurity without rules keeps ${engineRatio} of WAF-off, as bench:edge measured: PROFILE_ENGINE_RATIO)`,
      );
    }
  } finally {
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
    if (process.env.PROFILE_KEEP === "1") console.log(`callgrind files kept in ${hostDir}`);
    else await rm(hostDir, { recursive: true, force: true });
  }
}

await main();
