import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  nginxVersion,
  type RunningNginx,
  startNginx,
  writeSelfSignedCertificate,
} from "../../scripts/lib/nginx.js";
import { freePort, requireBinary, type Started, startProcess } from "../../scripts/lib/processes.js";
import { RATE_LIMIT_JAIL, renderFail2ban, WAF_JAIL } from "../render/fail2ban.js";
import { localLayout } from "../render/layout.js";
import { ACCESS_LOG_FILE, ERROR_LOG_FILE, renderNginx } from "../render/nginx.js";
import { rateLimitSchema, wafSchema } from "../render/settings.js";

// fail2ban against what nginx really writes: the rendered edge (rate limits, WAF) runs on loopback with a trivial
// upstream, clients on different 127.0.0.x addresses hit its limits and its WAF, then fail2ban-regex runs the
// rendered filters over those very log files, and a real fail2ban-server (its own socket, pid and database
// under a temp dir, a ban action that records instead of touching the firewall) bans the abusive address.

const execFileAsync = promisify(execFile);
const DOMAIN = "gateway.test";
/** wagate:trustedCidrs in these tests: the operator's backends, 127.0.0.49-55. */
const TRUSTED = "127.0.0.48/29";
/** Where the test upstream answers 429 itself, as the gateway does for its own limits. */
const GATEWAY_429_PATH = "/v1/otp";

let dir: string;
let upstream: Server;
let nginx: RunningNginx | undefined;
let httpsPort: number;
let logDir: string;

/** One HTTPS request from a chosen loopback address; resolves with the status. */
function hit(localAddress: string, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: httpsPort,
        path,
        method: "GET",
        servername: DOMAIN,
        headers: { host: DOMAIN, "user-agent": "wagate-test/1.0", accept: "application/json", ...headers },
        localAddress,
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function fail2banRegex(
  logFile: string,
  filterFile: string,
): Promise<{ matched: number; ips: string[] }> {
  const { stdout } = await execFileAsync("fail2ban-regex", ["--raw", "--out", "ip", logFile, filterFile]);
  const ips = stdout.split("\n").filter((l) => /^[0-9a-f.:]+$/.test(l.trim()));
  return { matched: ips.length, ips };
}

/** Waits until nginx has flushed `count` lines matching `pattern` to a log file. */
async function waitForLines(file: string, pattern: RegExp, count: number): Promise<string[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const lines = (await readFile(file, "utf8").catch(() => "")).split("\n").filter((l) => pattern.test(l));
    if (lines.length >= count || Date.now() > deadline) return lines;
    await sleep(50);
  }
}

beforeAll(async () => {
  await requireBinary("fail2ban-server", "fail2ban");
  await requireBinary("fail2ban-regex", "fail2ban");
  dir = await mkdtemp(join(tmpdir(), "wagate-fail2ban-"));
  upstream = createServer((req, res) => {
    // The gateway's own refusals (its OTP limits, say): a 429 that nginx passes on and fail2ban must not count.
    if (req.url?.startsWith(GATEWAY_429_PATH)) {
      res.writeHead(429, { "content-type": "application/json", "retry-after": "60" });
      res.end('{"error":{"code":"rate_limited","message":"Too many codes for this number"}}\n');
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"ok":true}\n');
  });
  const upstreamPort = await freePort();
  await new Promise<void>((resolve) => upstream.listen(upstreamPort, "127.0.0.1", resolve));
  httpsPort = await freePort();
  const layout = localLayout(join(dir, "edge"), {
    http: await freePort(),
    https: httpsPort,
    upstream: upstreamPort,
  });
  logDir = layout.logDir;
  // A tight per-IP limit so a short loop of requests is enough to be refused.
  const rateLimit = rateLimitSchema.parse({ perIp: { rate: 1, burst: 2 }, perToken: { rate: 1, burst: 2 } });
  await writeSelfSignedCertificate(layout, DOMAIN);
  nginx = await startNginx({
    layout,
    files: renderNginx({
      domain: DOMAIN,
      rateLimit,
      waf: wafSchema.parse({}),
      layout,
      workerProcesses: 1,
      nginxVersion: await nginxVersion(),
      trustedCidrs: [TRUSTED],
    }),
  });
});

afterAll(async () => {
  await nginx?.stop();
  await new Promise((resolve) => upstream?.close(resolve));
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("fail2ban filters over the logs nginx wrote", () => {
  it("the rate-limit filter matches exactly the edge's 429s, with the client address", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 15; i++) statuses.push(await hit("127.0.0.11", "/v1/messages"));
    const refused = statuses.filter((s) => s === 429).length;
    expect(refused).toBeGreaterThan(5);
    // A well-behaved client (one request) leaves a line that must not match.
    expect(await hit("127.0.0.12", "/healthz")).toBe(200);
    const access = join(logDir, ACCESS_LOG_FILE);
    await waitForLines(access, /127\.0\.0\.12/, 1);
    const files = renderFail2ban({ logDir }, { banAction: "dummy", ignoreIps: [], ignoreSelf: false });
    const filter = join(dir, "wagate-nginx-limit.conf");
    await writeFile(filter, files["filter.d/wagate-nginx-limit.conf"] ?? "");
    const result = await fail2banRegex(access, filter);
    expect(result.matched).toBe(refused);
    expect(new Set(result.ips)).toEqual(new Set(["127.0.0.11"]));
  });

  it("the gateway's own 429s do not count (shown failing on a filter that counts them)", async () => {
    // One request per address: each reaches the upstream (the edge's per-IP limit never answers first).
    const addresses = Array.from({ length: 6 }, (_, i) => `127.0.0.5${i}`);
    for (const address of addresses) expect(await hit(address, GATEWAY_429_PATH)).toBe(429);
    const access = join(logDir, ACCESS_LOG_FILE);
    const logged = await waitForLines(access, /"remote_addr":"127\.0\.0\.5\d"/, addresses.length);
    // The log does hold them: 429s passed on from the gateway, which nginx marks with an empty "edge".
    expect(logged).toHaveLength(addresses.length);
    for (const line of logged) expect(JSON.parse(line)).toMatchObject({ edge: "", status: 429 });

    const files = renderFail2ban({ logDir }, { banAction: "dummy" });
    const rendered = files["filter.d/wagate-nginx-limit.conf"] ?? "";
    const filter = join(dir, "wagate-nginx-limit-gateway.conf");
    await writeFile(filter, rendered);
    const counted = (await fail2banRegex(access, filter)).ips.filter((ip) => addresses.includes(ip));
    expect(counted).toEqual([]);

    // The broken copy: the same filter with any "edge" value. The same check then finds every one of them.
    const anyEdge = '"edge":"[^"]*"';
    expect(rendered).toContain('"edge":"(?:rate|conn)"');
    const broken = join(dir, "wagate-nginx-limit-any-edge.conf");
    await writeFile(broken, rendered.replace('"edge":"(?:rate|conn)"', anyEdge));
    const brokenCounted = (await fail2banRegex(access, broken)).ips.filter((ip) => addresses.includes(ip));
    expect(brokenCounted.sort()).toEqual(addresses);
  });

  it("the WAF filter matches one line per request ModSecurity refused, with the client address", async () => {
    const attacks = [
      "/v1/messages?id=1%27%20OR%20%271%27%3D%271",
      "/v1/messages?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
      "/v1/messages?file=..%2F..%2F..%2Fetc%2Fpasswd",
    ];
    // One attack per address: the per-IP rate limit here is tight and must not answer first.
    const statuses: number[] = [];
    for (const [i, path] of attacks.entries()) statuses.push(await hit(`127.0.0.2${i + 1}`, path));
    // Scanner user agent: a refusal that comes from a header rather than the query.
    statuses.push(
      await hit("127.0.0.24", "/healthz", { "user-agent": "sqlmap/1.7.2#stable (https://sqlmap.org)" }),
    );
    expect(statuses).toEqual([403, 403, 403, 403]);
    const errorLog = join(logDir, ERROR_LOG_FILE);
    const denials = await waitForLines(errorLog, /ModSecurity: Access denied.*127\.0\.0\.2[1-4]\b/, 4);
    expect(denials.length).toBe(4);
    expect(denials.every((l) => /\[id "\d+"\]/.test(l))).toBe(true);
    const files = renderFail2ban({ logDir }, { banAction: "dummy" });
    const filter = join(dir, "wagate-nginx-waf.conf");
    await writeFile(filter, files["filter.d/wagate-nginx-waf.conf"] ?? "");
    const result = await fail2banRegex(errorLog, filter);
    // One match per refused request, each with the attacker's address, and no other address.
    expect([...result.ips].sort()).toEqual(["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24"]);
  });
});

interface RunningFail2ban {
  server: Started;
  bansFile: string;
  logFile: string;
  client(...args: string[]): Promise<string>;
}

/**
 * A real fail2ban-server with Debian's stock configuration plus the rendered jails, as on the VM, under its own
 * directory (socket, pid, database, log), banning through an action that records instead of touching the firewall.
 */
async function startFail2ban(
  name: string,
  options: Parameters<typeof renderFail2ban>[1],
): Promise<RunningFail2ban> {
  const base = join(dir, name);
  const confDir = join(base, "conf");
  await cp("/etc/fail2ban", confDir, { recursive: true });
  const bansFile = join(base, "bans.txt");
  await writeFile(bansFile, "");
  await writeFile(
    join(confDir, "action.d", "wagate-test-record.conf"),
    `# Test only: records bans instead of changing the host's firewall.
[Definition]
actionstart =
actionstop =
actioncheck =
actionban = echo "ban <ip> <name>" >> ${bansFile}
actionunban = echo "unban <ip> <name>" >> ${bansFile}
`,
  );
  const files = renderFail2ban({ logDir }, { ...options, banAction: "wagate-test-record" });
  for (const [file, content] of Object.entries(files)) await writeFile(join(confDir, file), content);
  const logFile = join(base, "fail2ban.log");
  await writeFile(
    join(confDir, "fail2ban.local"),
    `[Definition]\ndbfile = ${join(base, "fail2ban.sqlite3")}\nlogtarget = ${logFile}\n`,
  );
  const socket = join(base, "fail2ban.sock");
  const server = startProcess(
    "fail2ban-server",
    "fail2ban-server",
    ["-f", "-x", "-c", confDir, "-s", socket, "-p", join(base, "fail2ban.pid"), "--loglevel", "INFO"],
    { logFile: join(base, "fail2ban.out") },
  );
  const client = (...args: string[]) =>
    execFileAsync("fail2ban-client", ["-c", confDir, "-s", socket, ...args]).then((r) => r.stdout);
  const deadline = Date.now() + 30_000;
  for (;;) {
    const status = await client("status").catch(() => "");
    if (status.includes(RATE_LIMIT_JAIL) && status.includes(WAF_JAIL)) {
      expect(status).toContain("sshd");
      break;
    }
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`fail2ban did not start its jails: ${await readFile(logFile, "utf8").catch(() => "")}`);
    }
    await sleep(200);
  }
  return { server, bansFile, logFile, client };
}

/** Polls a file until `done` says its text is what the test waits for, or 20 s pass; returns the last text. */
async function waitForText(file: string, done: (text: string) => boolean): Promise<string> {
  const deadline = Date.now() + 20_000;
  let text = await readFile(file, "utf8");
  while (!done(text) && Date.now() < deadline) {
    await sleep(200);
    text = await readFile(file, "utf8");
  }
  return text;
}

describe("fail2ban-server with the rendered jails", () => {
  const servers: Started[] = [];
  afterAll(async () => {
    for (const server of servers) await server.stop();
  });

  it("bans an address that keeps hitting the rate limit, and one the WAF keeps refusing, and no one else", async () => {
    // Loopback is every client here: this server ignores no address, so that it can ban one.
    const f2b = await startFail2ban("no-ignore", {
      banAction: "wagate-test-record",
      ignoreIps: [],
      ignoreSelf: false,
      trustedCidrs: [TRUSTED],
      rateLimit: { maxRetry: 5, findTimeSeconds: 60, banTimeSeconds: 600 },
      waf: { maxRetry: 3, findTimeSeconds: 600, banTimeSeconds: 600 },
    });
    servers.push(f2b.server);
    // A neighbour that behaves, and a flooder that ignores its 429s.
    expect(await hit("127.0.0.32", "/healthz")).toBe(200);
    for (let i = 0; i < 30; i++) await hit("127.0.0.31", "/v1/messages");
    let bans = await waitForText(f2b.bansFile, (t) => t.includes("127.0.0.31"));
    expect(bans).toContain(`ban 127.0.0.31 ${RATE_LIMIT_JAIL}`);
    expect(bans).not.toContain("127.0.0.32");
    // The server's own view (earlier tests' flooders may be in it too: fail2ban also reads lines within findtime).
    const banned =
      (await f2b.client("status", RATE_LIMIT_JAIL)).match(/Banned IP list:\s*(.*)/)?.[1]?.split(/\s+/) ?? [];
    expect(banned).toContain("127.0.0.31");
    expect(banned).not.toContain("127.0.0.32");

    // A scanner the WAF keeps refusing (3 attacks: within the burst, so every one reaches ModSecurity).
    const probes = [
      "/v1/messages?id=1%20UNION%20SELECT%20password%20FROM%20users",
      "/v1/messages?x=%3Cscript%3E",
      "/v1/messages?f=..%2F..%2Fetc%2Fshadow",
    ];
    for (const path of probes) expect(await hit("127.0.0.41", path)).toBe(403);
    bans = await waitForText(f2b.bansFile, (t) => t.includes(`ban 127.0.0.41 ${WAF_JAIL}`));
    expect(bans).toContain(`ban 127.0.0.41 ${WAF_JAIL}`);
    expect(bans).not.toContain(`ban 127.0.0.41 ${RATE_LIMIT_JAIL}`);

    // A trusted backend that does both: one token past its limit (refused per token: 429s) and three refused
    // requests. Its lines match both jails, and fail2ban ignores the address instead of banning it.
    const token =
      "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiYWNrZW5kIn0.c2lnbmF0dXJlLW9mLXRoZS1iYWNrZW5kLXRva2Vu";
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++)
      statuses.push(await hit("127.0.0.49", "/v1/messages", { authorization: token }));
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(20);
    for (const path of probes) expect(await hit("127.0.0.50", path)).toBe(403);
    const ignored = await waitForText(
      f2b.logFile,
      (t) => t.includes("Ignore 127.0.0.49") && t.includes("Ignore 127.0.0.50"),
    );
    expect(ignored).toMatch(new RegExp(`\\[${RATE_LIMIT_JAIL}\\] Ignore 127\\.0\\.0\\.49 by ip`));
    expect(ignored).toMatch(new RegExp(`\\[${WAF_JAIL}\\] Ignore 127\\.0\\.0\\.50 by ip`));
    bans = await readFile(f2b.bansFile, "utf8");
    expect(bans).not.toMatch(/127\.0\.0\.(49|50)\b/);
  });

  it("with the default ignore list, loopback is never banned, however hard it floods", async () => {
    // The defaults as the VM gets them (127.0.0.1/8, ::1, the host's own addresses); the same thresholds as above,
    // where these very floods were banned.
    const f2b = await startFail2ban("defaults", {
      banAction: "wagate-test-record",
      rateLimit: { maxRetry: 5, findTimeSeconds: 60, banTimeSeconds: 600 },
      waf: { maxRetry: 3, findTimeSeconds: 600, banTimeSeconds: 600 },
    });
    servers.push(f2b.server);
    for (let i = 0; i < 30; i++) await hit("127.0.0.61", "/v1/messages");
    for (const path of [
      "/v1/messages?id=1%20UNION%20SELECT%20password%20FROM%20users",
      "/v1/messages?x=%3Cscript%3E",
      "/v1/messages?f=..%2F..%2Fetc%2Fshadow",
    ])
      expect(await hit("127.0.0.62", path)).toBe(403);
    // fail2ban did read the lines and matched them, then let them go: it says so for each ignored address.
    const log = await waitForText(
      f2b.logFile,
      (t) =>
        t.includes(`[${RATE_LIMIT_JAIL}] Ignore 127.0.0.61 by ip`) &&
        t.includes(`[${WAF_JAIL}] Ignore 127.0.0.62 by ip`),
    );
    expect(log).toContain(`[${RATE_LIMIT_JAIL}] Ignore 127.0.0.61 by ip`);
    expect(log).toContain(`[${WAF_JAIL}] Ignore 127.0.0.62 by ip`);
    expect(await readFile(f2b.bansFile, "utf8")).not.toMatch(/^ban /m);
    for (const jail of [RATE_LIMIT_JAIL, WAF_JAIL])
      expect(await f2b.client("status", jail)).toMatch(/Currently banned:\s*0\b/);
  });
});
