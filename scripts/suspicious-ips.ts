import { DEFAULT_JAIL, DEFAULT_NFT, fail2banCommands, nftablesCommands } from "./ops/ban-commands.js";
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
  --fail2ban            print a fail2ban-client ban command per flagged client (never runs it)
  --jail <name>         the fail2ban jail for those commands (default: ${DEFAULT_JAIL})
  --nftables            print an nft command per flagged client (never runs it)
  --nft-table <t>       family and table (default: "${DEFAULT_NFT.table}"), sets ${DEFAULT_NFT.set4}/${DEFAULT_NFT.set6}
  --ban-time <d>        nftables element timeout, e.g. 1h (default: none)
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
  "nft-table": { type: "string" },
  "ban-time": { type: "string" },
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
  if (values["ban-time"] !== undefined && !values.nftables)
    throw new UsageError("--ban-time goes with --nftables");

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
    const ips = flagged.map((r) => r.ip);
    const commands = values.fail2ban
      ? fail2banCommands(ips, stringFlag(values.jail) ?? DEFAULT_JAIL)
      : nftablesCommands(
          ips,
          { ...DEFAULT_NFT, table: stringFlag(values["nft-table"]) ?? DEFAULT_NFT.table },
          stringFlag(values["ban-time"]),
        );
    if (commands.length) process.stdout.write(`${commands.join("\n")}\n`);
    process.stderr.write(`${summary(analysis, flagged.length)}\n`);
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
