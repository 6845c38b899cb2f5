import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAccessLine, parseCombinedLine, parseJsonLine, parseTimeLocal } from "../ops/access-log.js";
import { fail2banCommands, fail2banNftTarget, nftablesCommands } from "../ops/ban-commands.js";
import { forEachLine, MAX_LINE_BYTES } from "../ops/log-files.js";
import {
  type ClientSpec,
  combinedLine,
  expectedFor,
  jsonLine,
  MALFORMED_LINES,
  requestsFor,
  timeLocal,
} from "./helpers/access-logs.js";
import { runScript } from "./helpers/run-script.js";

const START = Date.UTC(2026, 10, 27, 10, 0, 0);
const HOUR = 3_600_000;

// Five clients whose orderings differ for every ranking key; ties are broken by requests, then by IP.
const CLIENTS: ClientSpec[] = [
  { ip: "203.0.113.10", get200: 120, post202: 30 },
  { ip: "203.0.113.20", get200: 10, post429: 80, post202: 5 },
  { ip: "198.51.100.7", get404: 60, get403: 4 },
  { ip: "2001:db8::66", wafPost403: 9, get200: 2 },
  { ip: "192.0.2.1", get200: 3 },
];

type Counters = ReturnType<typeof expectedFor>;

/**
 * The expected counters of each client, from the generated requests: nginx's combined format has no WAF
 * marker, so a WAF denial written in that format counts as a 403 only.
 */
const expected = new Map<string, Counters>();

function byKey(key: keyof Counters): string[] {
  return [...expected.entries()]
    .sort(([ipA, a], [ipB, b]) => b[key] - a[key] || b.requests - a.requests || (ipA < ipB ? -1 : 1))
    .map(([ip]) => ip);
}

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wagate-suspicious-"));
  const requests = requestsFor(CLIENTS, START, HOUR);
  // The edge's rotation: today's JSON log, yesterday's gzipped, and an older one in nginx's default format
  // (as before the edge's log_format was deployed), with malformed lines sprinkled in every file.
  const third = Math.ceil(requests.length / 3);
  const parts = [requests.slice(0, third), requests.slice(third, 2 * third), requests.slice(2 * third)];
  for (const c of CLIENTS) expected.set(c.ip, expectedFor(c));
  for (const r of parts[2] ?? []) if (r.waf) (expected.get(r.ip) as Counters).waf--;
  const withJunk = (lines: string[]) =>
    [...MALFORMED_LINES.slice(0, 5), ...lines, ...MALFORMED_LINES.slice(5)].join("\n");
  await writeFile(join(dir, "access.log"), `${withJunk((parts[0] ?? []).map(jsonLine))}\n`);
  await writeFile(join(dir, "access.log.1.gz"), gzipSync(`${withJunk((parts[1] ?? []).map(jsonLine))}\n`));
  // CRLF endings and a zone offset of +01:00 must not change anything.
  await writeFile(
    join(dir, "access.log.2"),
    `${withJunk((parts[2] ?? []).map((r) => combinedLine(r, 60))).replace(/\n/g, "\r\n")}`,
  );
  await writeFile(join(dir, "unrelated.txt"), "not a log\n");
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface JsonOut {
  files: string[];
  lines: number;
  entries: number;
  malformed: number;
  outsideWindow: number;
  clients: number;
  flagged: number;
  ips: Array<{
    ip: string;
    requests: number;
    posts: number;
    status4xx: number;
    status403: number;
    status429: number;
    waf: number;
    flagged: boolean;
    reasons: string[];
  }>;
}

async function analyze(args: string[]): Promise<JsonOut> {
  const result = await runScript("suspicious-ips.ts", [
    `${dir}/access.log*`,
    "--json",
    "--top",
    "0",
    ...args,
  ]);
  expect(result.stderr).toBe("");
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as JsonOut;
}

describe("parsing one access log line", () => {
  it("reads nginx's combined format, including the zone offset of $time_local", () => {
    const entry = parseCombinedLine(
      '203.0.113.9 - alice [27/Nov/2026:11:30:00 +0130] "POST /v1/otp HTTP/2.0" 429 53 "-" "curl/8.0"',
    );
    expect(entry).toEqual({
      ip: "203.0.113.9",
      time: Date.UTC(2026, 10, 27, 10, 0, 0),
      method: "POST",
      status: 429,
      waf: false,
    });
    expect(parseTimeLocal("27/Nov/2026:05:00:00 -0500")).toBe(Date.UTC(2026, 10, 27, 10, 0, 0));
  });

  it("counts a request line that is not HTTP (a TLS handshake on port 80) with no method", () => {
    const entry = parseAccessLine(
      '198.51.100.2 - - [27/Nov/2026:10:00:00 +0000] "\\x16\\x03\\x01\\x00" 400 157 "-" "-"',
    );
    expect(entry?.method).toBe("");
    expect(entry?.status).toBe(400);
  });

  it("reads the JSON format with its WAF marker, numeric or string status, ISO or epoch time", () => {
    expect(
      parseJsonLine(
        '{"time":"2026-11-27T10:00:00+00:00","remote_addr":"::1","method":"POST","status":"403","waf":"1"}',
      ),
    ).toEqual({
      ip: "::1",
      time: START,
      method: "POST",
      status: 403,
      waf: true,
    });
    const epoch = parseJsonLine(
      `{"msec":"${START / 1000}.250","remote_addr":"10.0.0.1","request":"GET / HTTP/1.1","status":200,"waf":""}`,
    );
    expect(epoch).toEqual({ ip: "10.0.0.1", time: START + 250, method: "GET", status: 200, waf: false });
  });

  it("returns nothing for every malformed line, never throws", () => {
    for (const line of MALFORMED_LINES) expect(parseAccessLine(line), line).toBeUndefined();
  });
});

describe("splitting a stream into lines", () => {
  async function linesOf(chunks: Buffer[]): Promise<{ lines: string[]; oversized: number }> {
    const lines: string[] = [];
    let oversized = 0;
    await forEachLine(Readable.from(chunks), {
      line: (t) => lines.push(t),
      oversized: () => {
        oversized++;
      },
    });
    return { lines, oversized };
  }

  it("joins lines split across chunks, strips CR and keeps a last line without newline", async () => {
    const result = await linesOf([
      Buffer.from("ab"),
      Buffer.from("c\r\nde"),
      Buffer.from("f\n\ng"),
      Buffer.from("h"),
    ]);
    expect(result).toEqual({ lines: ["abc", "def", "gh"], oversized: 0 });
  });

  it("drops an over-long line without buffering it and goes on with the next one", async () => {
    const big = Buffer.alloc(MAX_LINE_BYTES + 10, 0x61);
    const result = await linesOf([
      Buffer.from("first\n"),
      big.subarray(0, 40_000),
      big.subarray(40_000),
      Buffer.from("\nlast\n"),
    ]);
    expect(result).toEqual({ lines: ["first", "last"], oversized: 1 });
  });
});

describe("suspicious-ips on a generated rotation (JSON, gzipped JSON, combined, malformed lines)", () => {
  it("counts every line, skips the malformed ones, and has each client's exact counters", async () => {
    const out = await analyze([]);
    const total = CLIENTS.reduce((n, c) => n + expectedFor(c).requests, 0);
    expect(out.files.map((f) => f.slice(dir.length + 1))).toEqual([
      "access.log",
      "access.log.1.gz",
      "access.log.2",
    ]);
    expect(out.malformed).toBe(3 * MALFORMED_LINES.length);
    expect(out.entries).toBe(total);
    expect(out.lines).toBe(total + 3 * MALFORMED_LINES.length);
    expect(out.clients).toBe(CLIENTS.length);
    for (const c of CLIENTS) {
      const row = out.ips.find((r) => r.ip === c.ip);
      const { requests, posts, status4xx, status403, status429, waf } = row ?? ({} as JsonOut["ips"][number]);
      expect({ requests, posts, status4xx, status403, status429, waf }, c.ip).toEqual(expected.get(c.ip));
    }
  });

  it.each([
    ["requests", "requests"],
    ["posts", "posts"],
    ["4xx", "status4xx"],
    ["403", "status403"],
    ["429", "status429"],
    ["waf", "waf"],
  ] as const)("ranks by %s", async (sort, key) => {
    const out = await analyze(["--sort", sort]);
    expect(out.ips.map((r) => r.ip)).toEqual(byKey(key));
  });

  it("flags clients strictly over each maximum and names the reasons", async () => {
    const waf = (expected.get("2001:db8::66") as Counters).waf;
    const out = await analyze([
      ...["--max-requests", "140", "--max-posts", "1000", "--max-4xx", "1000", "--max-403", "1000"],
      ...["--max-429", "79", "--max-waf", String(waf - 1)],
    ]);
    const flagged = Object.fromEntries(out.ips.filter((r) => r.flagged).map((r) => [r.ip, r.reasons]));
    expect(flagged).toEqual({
      "203.0.113.10": ["requests>140"],
      "203.0.113.20": ["429>79"],
      "2001:db8::66": [`waf>${waf - 1}`],
    });
    expect(out.flagged).toBe(3);
  });

  it("only counts entries inside --since/--until", async () => {
    const all = await analyze([]);
    const firstHalf = await analyze(["--since", "2026-11-27T10:00:00Z", "--until", "2026-11-27T10:30:00Z"]);
    const secondHalf = await analyze(["--since", "2026-11-27T10:30:00Z"]);
    expect(firstHalf.entries).toBe(all.entries);
    expect(firstHalf.outsideWindow).toBe(secondHalf.entries - secondHalf.outsideWindow);
    const sum = (o: JsonOut) => o.ips.reduce((n, r) => n + r.requests, 0);
    expect(sum(firstHalf) + sum(secondHalf)).toBe(sum(all));
    expect(sum(firstHalf)).toBeGreaterThan(0);
    expect(sum(secondHalf)).toBeGreaterThan(0);
    const none = await analyze(["--since", "2026-11-28T00:00:00Z"]);
    expect(none.ips).toEqual([]);
    expect(none.outsideWindow).toBe(all.entries);
  });

  it("prints a readable table by default, top rows first", async () => {
    const result = await runScript("suspicious-ips.ts", [
      `${dir}/access.log*`,
      "--top",
      "2",
      "--sort",
      "429",
    ]);
    expect(result.code).toBe(0);
    const rows = result.stdout.trim().split("\n");
    expect(rows[0]).toMatch(/^ip\s+requests\s+posts\s+4xx\s+403\s+429\s+waf/);
    expect(rows[1]).toMatch(/^203\.0\.113\.20\s+95\s+85\s+80\s+0\s+80\s+0\s/);
    expect(rows[2]).toMatch(/^203\.0\.113\.10\s/);
    expect(rows[3]).toMatch(/^3 file\(s\), .* 30 malformed \(skipped\)/);
  });

  it("prints fail2ban and nftables commands for flagged clients only, with the summary on stderr", async () => {
    const f2b = await runScript("suspicious-ips.ts", [
      `${dir}/access.log*`,
      "--fail2ban",
      "--jail",
      "wagate-edge",
      "--max-waf",
      "0",
      "--max-4xx",
      "1000",
      "--max-429",
      "1000",
    ]);
    expect(f2b.code).toBe(0);
    expect(f2b.stdout).toBe("fail2ban-client set wagate-edge banip 2001:db8::66\n");
    expect(f2b.stderr).toMatch(/1 flagged/);
    const nft = await runScript("suspicious-ips.ts", [
      `${dir}/access.log*`,
      "--nftables",
      "--max-429",
      "0",
      "--max-waf",
      "0",
      "--max-4xx",
      "1000",
    ]);
    // fail2ban's own table and the WAF jail's sets (Debian's nftables action), not a table nothing creates.
    expect(nft.stdout.trim().split("\n").sort()).toEqual([
      "nft add element inet f2b-table addr-set-wagate-waf '{ 203.0.113.20 }'",
      "nft add element inet f2b-table addr6-set-wagate-waf '{ 2001:db8::66 }'",
    ]);
    const timed = await runScript("suspicious-ips.ts", [
      `${dir}/access.log*`,
      "--nftables",
      "--ban-time",
      "2h",
    ]);
    expect(timed.code).toBe(2);
    expect(timed.stderr).toMatch(/no timeouts/);
  });

  it("never names loopback or a trusted range in a ban command", async () => {
    const { writeFile } = await import("node:fs/promises");
    const log = join(dir, "trusted.json");
    const line = (ip: string, i: number) =>
      JSON.stringify({
        time: new Date(Date.UTC(2026, 10, 27, 10, 0, i)).toISOString(),
        remote_addr: ip,
        edge: "waf",
        status: 403,
        request: "GET /v1/messages HTTP/1.1",
      });
    const ips = [
      "127.0.0.1",
      "127.8.9.10",
      "::1",
      "::ffff:127.0.0.1",
      "198.51.100.7",
      "203.0.113.9",
      "2001:db8::5",
    ];
    await writeFile(
      log,
      `${ips.flatMap((ip) => Array.from({ length: 3 }, (_, i) => line(ip, i))).join("\n")}\n`,
    );
    const run = (extra: string[]) =>
      runScript("suspicious-ips.ts", [log, "--fail2ban", "--max-waf", "0", ...extra]).then((r) => ({
        ...r,
        banned: r.stdout
          .trim()
          .split("\n")
          .filter(Boolean)
          .map((c) => c.split(" ").at(-1))
          .sort(),
      }));
    const loopbackOnly = await run([]);
    expect(loopbackOnly.code).toBe(0);
    expect(loopbackOnly.banned).toEqual(["198.51.100.7", "2001:db8::5", "203.0.113.9"]);
    expect(loopbackOnly.stderr).toContain(
      "not banned: 4 flagged address(es) on loopback or in a trusted range",
    );
    const trusted = await run(["--trusted", "203.0.113.0/24,2001:db8::/32"]);
    expect(trusted.banned).toEqual(["198.51.100.7"]);
    const bad = await run(["--trusted", "203.0.113.0/33"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--trusted: not a CIDR block: "203\.0\.113\.0\/33"/);
  });

  it("reads wagate:trustedCidrs from the stack file with --stack", async () => {
    const { mkdtemp, writeFile } = await import("node:fs/promises");
    const { stackTrustedCidrs } = await import("../ops/stack-trusted-cidrs.js");
    const root = await mkdtemp(join(dir, "stack-"));
    await writeFile(
      join(root, "Pulumi.ops.yaml"),
      "config:\n  wagate:trustedCidrs:\n    - 198.51.100.0/24\n",
    );
    expect(await stackTrustedCidrs("ops", root)).toEqual(["198.51.100.0/24"]);
    await writeFile(join(root, "Pulumi.bare.yaml"), "config:\n  wagate:domain: x.example.com\n");
    expect(await stackTrustedCidrs("bare", root)).toEqual([]);
    await expect(stackTrustedCidrs("missing", root)).rejects.toThrow(/no .*Pulumi\.missing\.yaml/);
    const viaCli = await runScript("suspicious-ips.ts", [
      join(dir, "access.log"),
      "--fail2ban",
      "--stack",
      "nope",
    ]);
    expect(viaCli.code).toBe(1);
    expect(viaCli.stderr).toMatch(/--stack: no .*Pulumi\.nope\.yaml/);
  });

  it("reads a gzipped log piped on stdin ('-') together with files", async () => {
    const { readFile } = await import("node:fs/promises");
    const fromFiles = await analyze([]);
    const piped = await runScript(
      "suspicious-ips.ts",
      ["-", join(dir, "access.log"), join(dir, "access.log.2"), "--json", "--top", "0"],
      { stdin: await readFile(join(dir, "access.log.1.gz")) },
    );
    expect(piped.code).toBe(0);
    const out = JSON.parse(piped.stdout) as JsonOut;
    expect(out.files[0]).toBe("-");
    expect(out.entries).toBe(fromFiles.entries);
    expect(out.ips).toEqual(fromFiles.ips);
  });

  it("exits 3 with --fail-on-flagged only when a client is flagged", async () => {
    const flagged = await runScript("suspicious-ips.ts", [
      `${dir}/access.log*`,
      "--fail-on-flagged",
      "--max-waf",
      "0",
    ]);
    expect(flagged.code).toBe(3);
    const clean = await runScript("suspicious-ips.ts", [
      `${dir}/access.log`,
      "--fail-on-flagged",
      "--max-4xx",
      "1000",
    ]);
    expect(clean.code).toBe(0);
  });
});

describe("ban commands", () => {
  it("refuses anything that is not an IP address, so a log line cannot inject shell", () => {
    expect(() => fail2banCommands(["1.2.3.4; rm -rf /"], "wagate")).toThrow(/not an IP/);
    expect(() => nftablesCommands(["$(id)"], fail2banNftTarget("wagate-waf"))).toThrow(/not an IP/);
    expect(() => fail2banCommands(["1.2.3.4"], "jail;reboot")).toThrow(/jail/);
    expect(() => fail2banNftTarget("jail;reboot")).toThrow(/jail/);
  });
});

describe("suspicious-ips usage", () => {
  it("prints help and exits 0", async () => {
    const result = await runScript("suspicious-ips.ts", ["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^Usage: npm run suspicious-ips/);
  });

  it.each([
    [["--bogus", "x"], /unknown option --bogus/],
    [["--top", "many", "x"], /--top must be a whole number/],
    [["--sort", "bytes", "x"], /--sort must be one of/],
    [["--since", "yesterday", "x"], /--since must be/],
    [[], /give at least one log file/],
    [["--fail2ban", "--nftables", "x"], /choose one/],
  ])("%j is a usage error: one line, exit 2", async (args, message) => {
    const result = await runScript("suspicious-ips.ts", args);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(message);
  });

  it("names a missing file or an empty glob in one line, exit 1", async () => {
    const missing = await runScript("suspicious-ips.ts", [join(dir, "nope.log")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/no such log file: .*nope\.log/);
    const empty = await runScript("suspicious-ips.ts", [join(dir, "error.log*")]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/no log file matches/);
  });

  it("uses the same $time_local format as nginx", () => {
    expect(timeLocal(START, 60)).toBe("27/Nov/2026:11:00:00 +0100");
  });
});
