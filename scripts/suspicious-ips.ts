import {
  DEFAULT_JAIL,
  fail2banCommands,
  fail2banNftTarget,
  isTrusted,
  nftablesCommands,
  trustedRanges,
} from "./ops/ban-commands.js";
import { intFlag, parseCli, runCommand, stringFlag, UsageError } from "./ops/cli.js";
import {
  DEFAULT_THRESHOLDS,
  RANK_KEYS,
  type RankedIp,
  type RankKey,
  type Thresholds,
} from "./ops/ip-ranking.js";
import { type Analysis, analyzeLogs } from "./ops/log-analysis.js";
import { expandLogPaths } from "./ops/log-files.js";
import { stackTrustedCidrs } from "./ops/stack-trusted-cidrs.js";
import { parseWhen } from "./ops/time-window.js";

const USAGE = `Usage: npm run suspicious-ips -- [options] <log file or glob | ->...

Ranks client IPs in nginx access logs (the edge's JSON format or nginx's default "combined" format, plain or
gzipped, read as a stream) by requests, POSTs, 4xx, 403, 429 and WAF denials, and flags those over a maximum.
Quote globs so they reach the command: '/var/log/nginx/access.json*'. "-" reads stdin (plain or gzipped), e.g.
  ssh admin@<host> 'sudo cat /var/log/nginx/access.json*' | npm run suspicious-ips -- -
Malformed lines are counted and skipped.

Options:
  --since <when>        only entries at or after this time: ISO 8601 with zone, or a duration back from now (1h)
  --until <when>        only entries before this time (same forms)
  --sort <key>          requests | posts | 4xx | 403 | 429 | waf   (default: requests)
  --top <n>             rows to show, 0 for all (default: 20)
  --flagged             show only flagged clients
  --max-requests <n>    flag a client with more requests than this (default: ${DEFAULT_THRESHOLDS.requests})
  --max-posts <n>       ... more POSTs (default: ${DEFAULT_THRESHOLDS.posts})
  --max-4xx <n>         ... more 4xx answers (default: ${DEFAULT_THRESHOLDS["4xx"]})
  --max-403 <n>         ... more 403 answers (default: ${DEFAULT_THRESHOLDS["403"]})
  --max-429 <n>         ... more 429 answers, i.e. rate limited (default: ${DEFAULT_THRESHOLDS["429"]})
  --max-waf <n>         ... more WAF denials (default: ${DEFAULT_THRESHOLDS.waf})
  --json                print the analysis as JSON instead of a table
  --fail2ban            print a fail2ban-client ban command per flagged client (never runs it); the jail's ban
                        time applies and fail2ban lifts the ban itself
  --jail <name>         the fail2ban jail for those commands (default: ${DEFAULT_JAIL})
  --nftables            print an nft command per flagged client into the jail's own set in fail2ban's table
                        (${fail2banNftTarget(DEFAULT_JAIL).table}, ${fail2banNftTarget(DEFAULT_JAIL).set4} / ${fail2banNftTarget(DEFAULT_JAIL).set6}); such a ban has
                        no expiry: it lasts until fail2ban restarts
  --trusted <cidr,...>  never name these ranges in ban commands (loopback is never named either)
  --stack <name>        also never name the stack's wagate:trustedCidrs (read from Pulumi.<name>.yaml)
  -h, --help            this help

  --fail-on-flagged     exit with code 3 when a client is flagged (for cron and alerts)

Exit code: 0, or 3 with --fail-on-flagged when a client is flagged; 1 when a log cannot be read; 2 for bad usage.
With --fail2ban or --nftables, stdout holds only the commands; the summary goes to stderr.`;

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  since: { type: "string" },
  until: { type: "string" },
  sort: { type: "string" },
  top: { type: "string" },
  flagged: { type: "boolean" },
  "fail-on-flagged": { type: "boolean" },
  json: { type: "boolean" },
  fail2ban: { type: "boolean" },
  jail: { type: "string" },
  nftables: { type: "boolean" },
  "ban-time": { type: "string" },
  trusted: { type: "string", multiple: true },
  stack: { type: "string" },
  ...Object.fromEntries(RANK_KEYS.map((k) => [`max-${k}`, { type: "string" }])),
} as const;

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.000Z$/, "Z");
}

function table(rows: readonly RankedIp[]): string {
  const header = ["ip", "requests", "posts", "4xx", "403", "429", "waf", "first seen", "last seen", "flags"];
  const body = rows.map((r) => [
    r.ip,
    String(r.requests),
    String(r.posts),
    String(r.status4xx),
    String(r.status403),
    String(r.status429),
    String(r.waf),
    iso(r.firstSeen),
    iso(r.lastSeen),
    r.reasons.join(","),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] as string).length)));
  const format = (row: string[]) =>
    row
      .map((cell, i) =>
        i === 0 || i >= 7 ? cell.padEnd(widths[i] as number) : cell.padStart(widths[i] as number),
      )
      .join("  ")
      .trimEnd();
  return [format(header), ...body.map(format)].join("\n");
}

function summary(a: Analysis, flaggedCount: number): string {
  const lines = [
    `${a.files.length} file(s), ${a.lines} lines: ${a.entries} entries, ${a.malformed} malformed (skipped), ` +
      `${a.outsideWindow} outside the window; ${a.ranked.length} client IPs, ${flaggedCount} flagged`,
  ];
  for (const p of a.problems) lines.push(`warning: ${p.file}: read stopped early: ${p.message}`);
  return lines.join("\n");
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, OPTIONS);
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals.length === 0) throw new UsageError("give at least one log file or glob");
  const sort = stringFlag(values.sort) ?? "requests";
  if (!(RANK_KEYS as readonly string[]).includes(sort))
    throw new UsageError(`--sort must be one of ${RANK_KEYS.join(", ")}`);
  const thresholds = Object.fromEntries(
    RANK_KEYS.map((k) => [k, intFlag(values[`max-${k}`], `max-${k}`, DEFAULT_THRESHOLDS[k])]),
  ) as Thresholds;
  const top = intFlag(values.top, "top", 20);
  const now = Date.now();
  const since = values.since === undefined ? undefined : parseWhen(String(values.since), "since", now);
  const until = values.until === undefined ? undefined : parseWhen(String(values.until), "until", now);
  if (since !== undefined && until !== undefined && since >= until)
    throw new UsageError("--since must be before --until");
  if (values.fail2ban && values.nftables) throw new UsageError("choose one of --fail2ban and --nftables");
  if (values["ban-time"] !== undefined)
    throw new UsageError(
      "--ban-time: fail2ban's nftables sets have no timeouts; --fail2ban bans for the jail's ban time",
    );
  const trustedCidrs = [
    ...((values.trusted as string[] | undefined) ?? []).flatMap((t) => t.split(",")).filter((t) => t.trim()),
    ...(values.stack === undefined ? [] : await stackTrustedCidrs(String(values.stack))),
  ];
  let trusted: ReturnType<typeof trustedRanges>;
  try {
    trusted = trustedRanges(trustedCidrs);
  } catch (error) {
    throw new UsageError(`--trusted: ${(error as Error).message}`);
  }

  const files = await expandLogPaths(positionals);
  const analysis = await analyzeLogs({
    files,
    window: { since, until },
    sortBy: sort as RankKey,
    thresholds,
  });
  const flagged = analysis.ranked.filter((r) => r.flagged);
  const shown = (values.flagged ? flagged : analysis.ranked).slice(0, top === 0 ? undefined : top);

  if (values.fail2ban || values.nftables) {
    const jail = stringFlag(values.jail) ?? DEFAULT_JAIL;
    const ips = flagged.map((r) => r.ip).filter((ip) => !isTrusted(ip, trusted));
    const skipped = flagged.length - ips.length;
    const commands = values.fail2ban
      ? fail2banCommands(ips, jail)
      : nftablesCommands(ips, fail2banNftTarget(jail));
    if (commands.length) process.stdout.write(`${commands.join("\n")}\n`);
    process.stderr.write(`${summary(analysis, flagged.length)}\n`);
    if (skipped > 0)
      process.stderr.write(`not banned: ${skipped} flagged address(es) on loopback or in a trusted range\n`);
  } else if (values.json) {
    const out = {
      files: analysis.files,
      window: {
        since: since === undefined ? null : iso(since),
        until: until === undefined ? null : iso(until),
      },
      sortBy: sort,
      thresholds,
      lines: analysis.lines,
      entries: analysis.entries,
      malformed: analysis.malformed,
      outsideWindow: analysis.outsideWindow,
      problems: analysis.problems,
      clients: analysis.ranked.length,
      flagged: flagged.length,
      ips: shown.map((r) => ({ ...r, firstSeen: iso(r.firstSeen), lastSeen: iso(r.lastSeen) })),
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    process.stdout.write(
      `${shown.length ? table(shown) : "no matching entries"}\n${summary(analysis, flagged.length)}\n`,
    );
  }
  return values["fail-on-flagged"] && flagged.length > 0 ? 3 : 0;
}

runCommand("suspicious-ips", () => main(process.argv.slice(2)));
