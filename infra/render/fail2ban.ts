import { posix } from "node:path";
import { z } from "zod";
import type { EdgeLayout } from "./layout.js";
import { ACCESS_LOG_FIELDS, ACCESS_LOG_FILE, ERROR_LOG_FILE } from "./nginx.js";
import { trustedCidrsSchema } from "./settings.js";

// fail2ban for the edge: IPs that keep hitting the rate limits or keep being refused by the WAF are banned at
// the firewall (nftables), so they stop costing nginx anything. Two filters of our own (Debian ships none for
// ModSecurity on nginx, nor for our JSON access log) and one jail file that also makes the stock sshd jail read
// the journal: Debian 13 (like 12) installs no rsyslog, so /var/log/auth.log does not exist and a stock jail
// reading it would stop fail2ban from starting.
//
// Keys of the returned record are paths relative to fail2ban's configuration directory (/etc/fail2ban).

export const RATE_LIMIT_JAIL = "wagate-rate-limit";
export const WAF_JAIL = "wagate-waf";

const jailLimitSchema = z
  .object({
    /** Matching lines from one IP within `findTimeSeconds` that trigger a ban. */
    maxRetry: z.number().int().min(1).max(100_000),
    findTimeSeconds: z.number().int().min(1).max(86_400),
    /** First ban; repeat offenders get longer bans (bantime.increment), up to a week. */
    banTimeSeconds: z.number().int().min(1).max(604_800),
  })
  .strict();
export type JailLimit = z.infer<typeof jailLimitSchema>;

export const fail2banInputSchema = z
  .object({
    /**
     * 429s answered by nginx's limit_req/limit_conn. A client over its rate gets many 429s quickly, and a
     * legitimate one that bursts gets a few: the default bans only a client that ignores 429s for a while.
     */
    rateLimit: jailLimitSchema.default({ maxRetry: 120, findTimeSeconds: 60, banTimeSeconds: 600 }),
    /** Requests refused by ModSecurity: a scanner trips many rules quickly; a false positive is rare. */
    waf: jailLimitSchema.default({ maxRetry: 10, findTimeSeconds: 600, banTimeSeconds: 3_600 }),
    /** fail2ban action that bans (the VM: nftables; the tests: an action that only records). */
    banAction: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_.-]*$/)
      .default("nftables-multiport"),
    /** Never banned: loopback by default. Admin addresses can be added here. */
    ignoreIps: z.array(z.string().regex(/^[0-9a-fA-F.:/]+$/)).default(["127.0.0.1/8", "::1"]),
    /** The operator's backends (`wagate:trustedCidrs`): never banned, on top of ignoreIps. */
    trustedCidrs: trustedCidrsSchema.default([]),
    /** Never ban the host's own addresses (off only for tests that ban a loopback client). */
    ignoreSelf: z.boolean().default(true),
  })
  .strict();
export type Fail2banInput = z.input<typeof fail2banInputSchema>;

/**
 * Matches the access log lines of requests nginx refused itself for a rate or connection limit. The line starts
 * with `time`, `remote_addr`, `edge` in that order (ACCESS_LOG_FIELDS in nginx.ts); `edge` is "rate" for
 * limit_req and "conn" for limit_conn.
 */
export function renderRateLimitFilter(): string {
  // The regex below relies on the leading fields' order: a reordered log format must fail here, not match nothing.
  const leading = Object.keys(ACCESS_LOG_FIELDS).slice(0, 4).join(",");
  if (leading !== "time,remote_addr,edge,status") {
    throw new Error(
      `fail2ban's rate-limit filter expects the access log to start with time,remote_addr,edge,status, not ${leading}`,
    );
  }
  return `# Rendered by wagate (infra/render/fail2ban.ts). nginx JSON access log (ACCESS_LOG_FIELDS in nginx.ts):
# one object per line, "time", "remote_addr" and "edge" first. "edge" is "rate" (limit_req) or "conn"
# (limit_conn) when nginx answered 429 itself; a 429 from the gateway has edge "" and is not counted.
[Definition]
# fail2ban cuts the timestamp out of the line before matching: "time" is left empty.
failregex = ^\\{"time":"[^"]*","remote_addr":"<ADDR>","edge":"(?:rate|conn)","status":429,
ignoreregex =
datepattern = %%Y-%%m-%%dT%%H:%%M:%%S%%z
`;
}

/**
 * Matches ModSecurity's decision line in nginx's error log: one "Access denied" line per refused request
 * (the individual rule matches are "Warning" lines and are not counted).
 */
export function renderWafFilter(): string {
  return `# Rendered by wagate (infra/render/fail2ban.ts). ModSecurity v3 (libnginx-mod-http-modsecurity) writes one
# line per refused request to nginx's error log:
#   2026/01/02 03:04:05 [error] 123#123: *45 [client 203.0.113.9] ModSecurity: Access denied with code 403
#   (phase 2). ... [id "949110"] ... , client: 203.0.113.9, server: ..., request: "..."
# Matched rules that did not decide alone are "ModSecurity: Warning." lines: not counted here.
[Definition]
# fail2ban cuts the timestamp out of the line before matching.
failregex = ^\\s*\\[error\\] \\d+#\\d+: \\*\\d+ \\[client <ADDR>\\] ModSecurity: Access denied with code \\d{3}\\b
ignoreregex =
datepattern = ^%%Y/%%m/%%d %%H:%%M:%%S
`;
}

function jail(name: string, filter: string, logPath: string, limit: JailLimit): string {
  return `[${name}]
enabled = true
filter = ${filter}
logpath = ${logPath}
# Files written by nginx itself, not the journal: polled or watched with inotify.
backend = auto
port = http,https
maxretry = ${limit.maxRetry}
findtime = ${limit.findTimeSeconds}
bantime = ${limit.banTimeSeconds}
`;
}

/** Every fail2ban file of the edge, by path relative to fail2ban's configuration directory. */
export function renderFail2ban(
  logs: Pick<EdgeLayout, "logDir">,
  input: Fail2banInput = {},
): Record<string, string> {
  const c = fail2banInputSchema.parse(input);
  const accessLog = posix.join(logs.logDir, ACCESS_LOG_FILE);
  const errorLog = posix.join(logs.logDir, ERROR_LOG_FILE);
  const jails = `# Rendered by wagate (infra/render/fail2ban.ts). Do not edit on the host: re-render.
[DEFAULT]
banaction = ${c.banAction}
banaction_allports = ${c.banAction === "nftables-multiport" ? "nftables-allports" : c.banAction}
# Loopback, and the operator's backends (wagate:trustedCidrs): their own server must never lose the API.
ignoreip = ${[...c.ignoreIps, ...c.trustedCidrs].join(" ")}
ignoreself = ${c.ignoreSelf}
# Repeat offenders: each new ban doubles, capped at a week.
bantime.increment = true
bantime.maxtime = 604800

# Debian 13 has no rsyslog: sshd logs only to the journal (fail2ban 1.1 reads it through python3-systemd). A jail
# reading /var/log/auth.log, which does not exist, would keep fail2ban from starting. (OpenSSH 10 logs failed logins
# from \`sshd-session\`, inside ssh.service: Debian's journal match for the unit finds them; the box checks it.)
[sshd]
enabled = true
backend = systemd

${jail(RATE_LIMIT_JAIL, "wagate-nginx-limit", accessLog, c.rateLimit)}
${jail(WAF_JAIL, "wagate-nginx-waf", errorLog, c.waf)}`;
  return {
    // Debian's fail2ban.conf leaves allowipv6 unset and every client command warns about it. `yes`, not `auto`:
    // auto looks for an IPv6 address of the host's own name, and without one the jails' IPv6 sets are not made.
    "fail2ban.d/wagate.local":
      "# Rendered by wagate (infra/render/fail2ban.ts).\n[Definition]\nallowipv6 = yes\n",
    // Debian's nftables action creates a jail's table, chain and sets only at its first ban; created when the
    // jail starts instead, the sets exist for a manual ban at any time (suspicious-ips --nftables prints those).
    "action.d/nftables-common.local":
      "# Rendered by wagate (infra/render/fail2ban.ts).\n[Definition]\nactionstart_on_demand = false\n",
    "filter.d/wagate-nginx-limit.conf": renderRateLimitFilter(),
    "filter.d/wagate-nginx-waf.conf": renderWafFilter(),
    "jail.d/wagate.local": jails,
  };
}
