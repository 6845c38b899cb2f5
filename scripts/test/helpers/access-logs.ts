// Generated nginx access logs with a known content, so tests can state the exact expected ranking.

export interface GeneratedRequest {
  ip: string;
  time: number;
  method: string;
  path: string;
  status: number;
  waf: boolean;
}

/** A client's traffic as counts of each kind of request. */
export interface ClientSpec {
  ip: string;
  get200?: number;
  post202?: number;
  get404?: number;
  post429?: number;
  get403?: number;
  /** 403 answers refused by the WAF (POST with an SQL injection in the body, say). */
  wafPost403?: number;
}

export interface Expected {
  requests: number;
  posts: number;
  status4xx: number;
  status403: number;
  status429: number;
  waf: number;
}

export function expectedFor(c: ClientSpec): Expected {
  const n = (v?: number) => v ?? 0;
  return {
    requests: n(c.get200) + n(c.post202) + n(c.get404) + n(c.post429) + n(c.get403) + n(c.wafPost403),
    posts: n(c.post202) + n(c.post429) + n(c.wafPost403),
    status4xx: n(c.get404) + n(c.post429) + n(c.get403) + n(c.wafPost403),
    status403: n(c.get403) + n(c.wafPost403),
    status429: n(c.post429),
    waf: n(c.wafPost403),
  };
}

/** A small deterministic PRNG (mulberry32) so generated logs are the same on every run. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Every request of every client, spread over [start, start + spanMs), shuffled deterministically. */
export function requestsFor(
  clients: readonly ClientSpec[],
  start: number,
  spanMs: number,
  seed = 1,
): GeneratedRequest[] {
  const random = prng(seed);
  const out: GeneratedRequest[] = [];
  const push = (
    ip: string,
    count: number | undefined,
    method: string,
    path: string,
    status: number,
    waf = false,
  ) => {
    for (let i = 0; i < (count ?? 0); i++) {
      out.push({
        ip,
        time: start + Math.floor((random() * spanMs) / 1000) * 1000,
        method,
        path,
        status,
        waf,
      });
    }
  };
  for (const c of clients) {
    push(c.ip, c.get200, "GET", "/v1/messages/abc", 200);
    push(c.ip, c.post202, "POST", "/v1/messages", 202);
    push(c.ip, c.get404, "GET", "/wp-login.php", 404);
    push(c.ip, c.post429, "POST", "/v1/otp", 429);
    push(c.ip, c.get403, "GET", "/metrics", 403);
    push(c.ip, c.wafPost403, "POST", "/v1/messages", 403, true);
  }
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j] as GeneratedRequest, out[i] as GeneratedRequest];
  }
  return out;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** nginx's `$time_local` in the given zone offset (minutes east of UTC). */
export function timeLocal(ms: number, offsetMinutes = 0): string {
  const d = new Date(ms + offsetMinutes * 60_000);
  const p = (n: number) => String(n).padStart(2, "0");
  const sign = offsetMinutes < 0 ? "-" : "+";
  const off = Math.abs(offsetMinutes);
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${sign}${p(Math.floor(off / 60))}${p(off % 60)}`;
}

/** nginx's default `combined` format. */
export function combinedLine(r: GeneratedRequest, offsetMinutes = 0): string {
  return `${r.ip} - - [${timeLocal(r.time, offsetMinutes)}] "${r.method} ${r.path} HTTP/1.1" ${r.status} 42 "-" "Mozilla/5.0 (X11; Linux x86_64)"`;
}

/** The edge's JSON format, field for field as `log_format wagate_json` in infra/render/nginx.ts writes it. */
export function jsonLine(r: GeneratedRequest): string {
  return JSON.stringify({
    time: new Date(r.time).toISOString().replace(/\.\d{3}Z$/, "+00:00"),
    remote_addr: r.ip,
    edge: r.waf ? "waf" : r.status === 429 ? "rate" : "",
    status: r.status,
    request: `${r.method} ${r.path} HTTP/2.0`,
    request_id: "5f2b8c0e9a7d4e1f8a6b3c2d1e0f9a8b",
    request_time: 0.003,
    request_length: 312,
    body_bytes_sent: 42,
    upstream_status: r.waf || r.status === 429 ? "" : String(r.status),
    upstream_response_time: r.waf || r.status === 429 ? "" : "0.002",
    user_agent: "curl/8.0",
    tls: "TLSv1.3",
  });
}

/** Lines that are neither format, or broken versions of them. */
export const MALFORMED_LINES = [
  "garbage",
  "{not json",
  '{"remote_addr":"203.0.113.1","status":200}',
  '{"time":"2026-11-27T10:00:00Z","remote_addr":"not-an-ip","status":200}',
  '{"time":"2026-11-27T10:00:00Z","remote_addr":"203.0.113.1","status":"abc"}',
  '["an","array"]',
  '203.0.113.1 - - [99/Foo/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',
  '300.1.1.1 - - [27/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',
  "\u0000\u0001\u0002 binary",
  '203.0.113.1 - - [27/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 2000 1 "-" "-"',
];
