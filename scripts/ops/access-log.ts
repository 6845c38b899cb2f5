import { isIP } from "node:net";

// One line of nginx's access log, in either the edge's JSON format or nginx's default "combined" format,
// reduced to what the IP analysis needs. A line that cannot be read this way yields `undefined` (counted and
// skipped by the caller), never an exception: logs hold whatever attackers sent.

export interface AccessEntry {
  ip: string;
  /** Milliseconds since the epoch. */
  time: number;
  /** Upper-case HTTP method, or "" when the request line was not HTTP (TLS on port 80, junk). */
  method: string;
  status: number;
  /** The request was refused by the WAF (ModSecurity), as marked by the edge's JSON log. */
  waf: boolean;
}

/**
 * JSON fields read, first match wins. The edge's format (`ACCESS_LOG_FIELDS` in infra/render/nginx.ts) is the
 * first name of each list: `time` (ISO 8601), `remote_addr`, `status`, `request` ("POST /v1/messages HTTP/2.0")
 * and `edge`, which is "waf" when ModSecurity refused the request. The other names are those common in
 * hand-written nginx `log_format ... escape=json` blocks.
 */
export const JSON_FIELDS = {
  ip: ["remote_addr", "client_ip", "ip"],
  time: ["time", "time_iso8601", "timestamp", "@timestamp", "time_local", "msec"],
  method: ["request_method", "method"],
  request: ["request"],
  status: ["status"],
} as const;

/** The edge's marker (`"edge":"waf"`), or a `waf` field that is set, as in other hand-written formats. */
function refusedByWaf(r: Record<string, unknown>): boolean {
  return r.edge === "waf" || truthyMarker(r.waf);
}

const MONTHS: Record<string, number> = {
  Jan: 0,
  Feb: 1,
  Mar: 2,
  Apr: 3,
  May: 4,
  Jun: 5,
  Jul: 6,
  Aug: 7,
  Sep: 8,
  Oct: 9,
  Nov: 10,
  Dec: 11,
};

/** nginx's `$time_local`: `10/Oct/2026:13:55:36 +0000`. */
export function parseTimeLocal(text: string): number | undefined {
  const m = /^(\d{2})\/([A-Z][a-z]{2})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(text);
  if (!m) return undefined;
  const month = MONTHS[m[2] as string];
  if (month === undefined) return undefined;
  const utc = Date.UTC(Number(m[3]), month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6]));
  const offsetMinutes = (Number(m[8]) * 60 + Number(m[9])) * (m[7] === "-" ? -1 : 1);
  return utc - offsetMinutes * 60_000;
}

function parseTimeValue(value: unknown): number | undefined {
  if (typeof value === "number")
    return Number.isFinite(value) ? value * (value < 1e11 ? 1000 : 1) : undefined;
  if (typeof value !== "string" || value === "") return undefined;
  // `$msec` is seconds with a fraction; anything else is an ISO 8601 or `$time_local` timestamp.
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const local = parseTimeLocal(value);
  if (local !== undefined) return local;
  if (!/^\d{4}-\d{2}-\d{2}T/.test(value)) return undefined;
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : t;
}

function parseStatus(value: unknown): number | undefined {
  const n =
    typeof value === "number"
      ? value
      : typeof value === "string" && /^\d{3}$/.test(value)
        ? Number(value)
        : NaN;
  return Number.isInteger(n) && n >= 100 && n <= 599 ? n : undefined;
}

function methodOf(requestLine: string): string {
  const m = /^([A-Z]{3,10}) /.exec(requestLine);
  return m ? (m[1] as string) : "";
}

function truthyMarker(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0) return false;
  if (typeof value === "string") return value !== "" && value !== "-" && value !== "0" && value !== "false";
  return true;
}

function pick(record: Record<string, unknown>, names: readonly string[]): unknown {
  for (const name of names) if (record[name] !== undefined) return record[name];
  return undefined;
}

export function parseJsonLine(line: string): AccessEntry | undefined {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof record !== "object" || record === null || Array.isArray(record)) return undefined;
  const r = record as Record<string, unknown>;
  const ip = pick(r, JSON_FIELDS.ip);
  if (typeof ip !== "string" || isIP(ip) === 0) return undefined;
  const time = parseTimeValue(pick(r, JSON_FIELDS.time));
  const status = parseStatus(pick(r, JSON_FIELDS.status));
  if (time === undefined || status === undefined) return undefined;
  const method = pick(r, JSON_FIELDS.method);
  const request = pick(r, JSON_FIELDS.request);
  return {
    ip,
    time,
    status,
    method:
      typeof method === "string" && /^[A-Z]{3,10}$/.test(method)
        ? method
        : typeof request === "string"
          ? methodOf(request)
          : "",
    waf: refusedByWaf(r),
  };
}

// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`;
// nginx escapes `"` inside the request line as `\x22`, so the quoted field never holds a bare quote.
const COMBINED = /^(\S+) \S+ .*?\[([^\]]+)\] "([^"]*)" (\d{3}) /;

export function parseCombinedLine(line: string): AccessEntry | undefined {
  const m = COMBINED.exec(line);
  if (!m) return undefined;
  const ip = m[1] as string;
  if (isIP(ip) === 0) return undefined;
  const time = parseTimeLocal(m[2] as string);
  const status = parseStatus(m[4]);
  if (time === undefined || status === undefined) return undefined;
  return { ip, time, status, method: methodOf(m[3] as string), waf: false };
}

/** Either format, decided per line so a log that changed format at a rotation reads in one pass. */
export function parseAccessLine(line: string): AccessEntry | undefined {
  return line.charCodeAt(0) === 123 /* { */ ? parseJsonLine(line) : parseCombinedLine(line);
}
