import { randomBytes, randomUUID } from "node:crypto";
import { isIP } from "node:net";
import { URI_REFUSED_MESSAGE } from "../../infra/render/nginx.js";
import { EDGE_ERRORS } from "../../infra/render/nginx-errors.js";
import { burstAgent, handshake, type ProbeResponse, probe, type Target } from "./http-probe.js";

// What `npm run smoke` checks on a deployed (or the local) edge, the way an attacker and a client see it. Each
// check is independent and yields one line; the order matters only for the rate-limit check, which runs last
// because it spends the client's request budget.

/**
 * Whether the edge itself refused: its WAF's 403 or its positive model's 400, told apart by their messages from
 * the gateway's own refusals behind it (the gateway also answers 403 to a failed handshake and 400 to an unknown
 * query parameter), so a missing WAF cannot pass for one.
 */
function refusedByEdge(res: ProbeResponse): boolean {
  let message: unknown;
  try {
    message = (JSON.parse(res.body) as { error?: { message?: unknown } }).error?.message;
  } catch {
    return false;
  }
  return (
    (res.status === 403 && message === EDGE_ERRORS[403]?.message) ||
    (res.status === 400 && message === URI_REFUSED_MESSAGE)
  );
}

export interface SmokeOptions {
  /** `https://host[:port]`: the API's base URL. */
  url: string;
  /** The plain-HTTP entry that must redirect (default `http://<host>` on port 80). */
  httpUrl?: string;
  /** Connect here instead of resolving the host (curl's `--resolve host:port:address`). */
  address?: string;
  /** PEM of an extra CA to trust (a local or test CA). */
  ca?: string;
  /** An API token (JWT); without it the "token accepted" check is skipped. */
  token?: string;
  /** Most requests the rate-limit check may send before it gives up (default 300). */
  burstMax?: number;
  /** Requests in flight during the burst (default 10). */
  concurrency?: number;
  /** The certificate must stay valid at least this many days (default 7). */
  minCertDays?: number;
  /** Check names not to run (e.g. `waf` on a stack with the WAF switched off). */
  skip?: readonly string[];
  timeoutMs?: number;
}

export interface CheckResult {
  name: string;
  status: "pass" | "fail" | "skip";
  detail: string;
}

export const CHECK_NAMES = [
  "tls1.2-accepted",
  "tls1.3-accepted",
  "certificate",
  "tls1.0-refused",
  "tls1.1-refused",
  "http-redirects",
  "health",
  "headers",
  "internal-routes-refused",
  "unauthenticated-refused",
  "forged-token-refused",
  "token-accepted",
  "waf-blocks-sqli",
  "rate-limit",
] as const;

function header(res: ProbeResponse, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(", ") : v;
}

function base64url(value: string | Buffer): string {
  return Buffer.from(value).toString("base64url");
}

/** The `scope` claim of a JWT, read without verifying it: only to know which answer a valid token should get. */
export function tokenScopes(token: string): Set<string> {
  try {
    const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as {
      scope?: unknown;
    };
    return new Set(typeof payload.scope === "string" ? payload.scope.split(" ").filter(Boolean) : []);
  } catch {
    return new Set();
  }
}

/** HSTS, no sniffing, no framing, no referrer, no version banner (what `SECURITY_HEADERS` at the edge sets). */
export function headerProblems(res: ProbeResponse): string[] {
  const problems: string[] = [];
  const hsts = header(res, "strict-transport-security") ?? "";
  const maxAge = Number(/max-age=(\d+)/i.exec(hsts)?.[1] ?? "0");
  if (maxAge < 15_552_000) problems.push(`Strict-Transport-Security max-age ${maxAge} < 180 days`);
  if ((header(res, "x-content-type-options") ?? "").toLowerCase() !== "nosniff")
    problems.push("no X-Content-Type-Options: nosniff");
  const frameOptions = (header(res, "x-frame-options") ?? "").toUpperCase();
  const csp = header(res, "content-security-policy") ?? "";
  if (frameOptions !== "DENY" && !/frame-ancestors\s+'none'/.test(csp))
    problems.push("framing not refused (X-Frame-Options/CSP)");
  if (!header(res, "referrer-policy")) problems.push("no Referrer-Policy");
  const server = header(res, "server");
  if (server && /\d/.test(server)) problems.push(`Server header reveals a version: ${server}`);
  if (header(res, "x-powered-by")) problems.push("X-Powered-By present");
  return problems;
}

interface Context {
  target: Target;
  http: Target;
  options: SmokeOptions;
  tls12Connected: boolean;
}

type Check = (ctx: Context) => Promise<Omit<CheckResult, "name">>;

const pass = (detail: string) => ({ status: "pass" as const, detail });
const fail = (detail: string) => ({ status: "fail" as const, detail });

/** A message id that exists nowhere: the gateway validates ids as UUIDs, so a valid token gets a plain 404. */
function randomId(): string {
  return randomUUID();
}

const checks: Record<(typeof CHECK_NAMES)[number], Check> = {
  async "tls1.2-accepted"(ctx) {
    const outcome = await handshake(ctx.target, "TLSv1.2");
    if (outcome.kind !== "accepted") return fail(`handshake failed: ${outcome.reason}`);
    ctx.tls12Connected = true;
    return pass(`negotiated ${outcome.protocol}`);
  },
  async "tls1.3-accepted"(ctx) {
    const outcome = await handshake(ctx.target, "TLSv1.3");
    return outcome.kind === "accepted"
      ? pass(`negotiated ${outcome.protocol}`)
      : fail(`handshake failed: ${outcome.reason}`);
  },
  async certificate(ctx) {
    const outcome = await handshake(ctx.target, "TLSv1.3");
    if (outcome.kind !== "accepted") return fail(`no handshake: ${outcome.reason}`);
    if (!outcome.authorized) return fail(`not trusted for ${ctx.target.host}: ${outcome.authorizationError}`);
    const min = ctx.options.minCertDays ?? 7;
    return outcome.daysLeft >= min
      ? pass(`trusted for ${ctx.target.host}, ${outcome.daysLeft} days left`)
      : fail(`expires in ${outcome.daysLeft} days (< ${min}): is certbot renewing?`);
  },
  async "tls1.0-refused"(ctx) {
    return legacyRefused(ctx, "TLSv1");
  },
  async "tls1.1-refused"(ctx) {
    return legacyRefused(ctx, "TLSv1.1");
  },
  async "http-redirects"(ctx) {
    const path = `/v1/messages/${randomId()}`;
    const res = await probe("http", ctx.http, path);
    const location = header(res, "location") ?? "";
    const expected = `https://${ctx.target.host}${ctx.target.port === 443 ? "" : `:${ctx.target.port}`}${path}`;
    if (res.status !== 301 && res.status !== 308)
      return fail(`plain HTTP answered ${res.status}, not a redirect`);
    return location === expected
      ? pass(`${res.status} to ${location}`)
      : fail(`redirects to ${location}, expected ${expected}`);
  },
  async health(ctx) {
    const res = await probe("https", ctx.target, "/healthz");
    return res.status === 200
      ? pass("GET /healthz answered 200")
      : fail(`GET /healthz answered ${res.status}`);
  },
  async headers(ctx) {
    const res = await probe("https", ctx.target, `/v1/messages/${randomId()}`);
    const problems = headerProblems(res);
    return problems.length === 0
      ? pass("HSTS, nosniff, no framing, no referrer, no version banner")
      : fail(problems.join("; "));
  },
  async "internal-routes-refused"(ctx) {
    const statuses: string[] = [];
    for (const path of ["/metrics", "/readyz"]) {
      const res = await probe("https", ctx.target, path);
      if (res.status < 400) return fail(`${path} answered ${res.status} from the internet`);
      statuses.push(`${path} ${res.status}`);
    }
    return pass(statuses.join(", "));
  },
  async "unauthenticated-refused"(ctx) {
    const res = await probe("https", ctx.target, `/v1/messages/${randomId()}`);
    return res.status === 401
      ? pass("GET /v1/messages/:id without a token answered 401")
      : fail(`answered ${res.status}, not 401`);
  },
  async "forged-token-refused"(ctx) {
    const now = Math.floor(Date.now() / 1000);
    const claims = base64url(
      JSON.stringify({
        scope: "messages:read admin",
        aud: "wagate",
        iss: "wagate",
        exp: now + 300,
        jti: randomUUID(),
      }),
    );
    const forged = {
      "alg none": `${base64url('{"alg":"none","typ":"JWT"}')}.${claims}.`,
      "random key": `${base64url('{"alg":"HS256","typ":"JWT"}')}.${claims}.${base64url(randomBytes(32))}`,
    };
    for (const [kind, token] of Object.entries(forged)) {
      const res = await probe("https", ctx.target, `/v1/messages/${randomId()}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      if (res.status !== 401) return fail(`a token signed with ${kind} answered ${res.status}, not 401`);
    }
    return pass("alg none and a wrong key both answered 401");
  },
  async "token-accepted"(ctx) {
    const token = ctx.options.token;
    if (!token) return { status: "skip", detail: "no --token given" };
    // A valid token gets 404 for an unknown message id when it may read messages, 403 when it may not; an
    // invalid one gets 401 either way.
    const canRead = tokenScopes(token).has("messages:read");
    const expected = canRead ? 404 : 403;
    const res = await probe("https", ctx.target, `/v1/messages/${randomId()}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    if (res.status === expected) {
      return pass(
        `authenticated (${res.status}${canRead ? "" : ": the token lacks messages:read, as its scope says"})`,
      );
    }
    return fail(
      `answered ${res.status}, expected ${expected}${res.status === 401 ? ": the token was refused" : ""}`,
    );
  },
  async "waf-blocks-sqli"(ctx) {
    // Anonymous API requests meet the edge's token check first (401) where identity-first is on, so the
    // anonymous probe goes to Meta's webhook route, which keeps the full CRS; with a token, the API route too:
    // CRS's 403 without identity first, the edge's positive model's 400 with it (a verified request meets no WAF;
    // this route takes no query parameter). Either way the probe never reaches the gateway.
    const injection = "id=1%27%20OR%20%271%27%3D%271%27--";
    const anonymous = await probe("https", ctx.target, `/webhooks/whatsapp?${injection}`);
    if (!refusedByEdge(anonymous))
      return fail(
        `an SQL injection probe on /webhooks/whatsapp answered ${anonymous.status}, not the edge's 403`,
      );
    const token = ctx.options.token;
    if (!token) return pass("an SQL injection probe answered 403 (anonymous; no --token for the API route)");
    const verified = await probe("https", ctx.target, `/v1/messages/${randomId()}?${injection}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return refusedByEdge(verified)
      ? pass(`SQL injection probes refused by the edge: 403 anonymous, ${verified.status} with the token`)
      : fail(`an SQL injection probe with the token answered ${verified.status}, not the edge's refusal`);
  },
  async "rate-limit"(ctx) {
    const max = ctx.options.burstMax ?? 300;
    const concurrency = ctx.options.concurrency ?? 10;
    const agent = burstAgent(ctx.target, concurrency);
    let sent = 0;
    let limitedAt = 0;
    const others = new Map<number, number>();
    // Stops at the first 429, so a passing run leaves at most `concurrency` rate-limited requests in the log
    // (fail2ban counts them).
    const worker = async () => {
      while (limitedAt === 0 && sent < max) {
        const n = ++sent;
        const res = await probe("https", ctx.target, "/healthz", { agent });
        if (res.status === 429) limitedAt ||= n;
        else others.set(res.status, (others.get(res.status) ?? 0) + 1);
      }
    };
    try {
      await Promise.all(Array.from({ length: concurrency }, worker));
    } finally {
      agent.destroy();
    }
    const seen = [...others].map(([s, n]) => `${n}x${s}`).join(", ");
    return limitedAt > 0
      ? pass(`429 after ${limitedAt} requests`)
      : fail(`no 429 within ${max} requests (${seen || "no answers"})`);
  },
};

async function legacyRefused(ctx: Context, version: "TLSv1" | "TLSv1.1"): Promise<Omit<CheckResult, "name">> {
  const outcome = await handshake(ctx.target, version);
  if (outcome.kind === "accepted") return fail(`the server accepted ${outcome.protocol}`);
  if (outcome.kind === "untestable") return fail(`cannot tell: ${outcome.reason}`);
  // A refusal only means something if the server does speak TLS on that port.
  if (!ctx.tls12Connected) ctx.tls12Connected = (await handshake(ctx.target, "TLSv1.2")).kind === "accepted";
  if (!ctx.tls12Connected) return fail("cannot tell: TLS 1.2 does not connect either");
  return pass(`refused (${outcome.reason})`);
}

export function targetsOf(options: SmokeOptions): { target: Target; http: Target } {
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new Error(`not a URL: ${options.url}`);
  }
  if (url.protocol !== "https:") throw new Error(`the URL must be https://, got ${url.protocol}//`);
  if (url.pathname !== "/" || url.search || url.hash)
    throw new Error("give the base URL only (https://host[:port])");
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (options.address !== undefined && isIP(options.address) === 0)
    throw new Error(`not an IP address: ${options.address}`);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const target: Target = {
    host,
    address: options.address ?? host,
    port: url.port ? Number(url.port) : 443,
    ca: options.ca,
    timeoutMs,
  };
  const httpUrl = new URL(options.httpUrl ?? `http://${url.host.replace(/:\d+$/, "")}`);
  if (httpUrl.protocol !== "http:")
    throw new Error(`the HTTP URL must be http://, got ${httpUrl.protocol}//`);
  const http: Target = { ...target, port: httpUrl.port ? Number(httpUrl.port) : 80, ca: undefined };
  return { target, http };
}

/** Runs every check (minus `skip`) in order; never throws for a failing check, only for bad options. */
export async function runSmoke(options: SmokeOptions): Promise<CheckResult[]> {
  for (const name of options.skip ?? []) {
    if (!(CHECK_NAMES as readonly string[]).includes(name)) throw new Error(`unknown check to skip: ${name}`);
  }
  const ctx: Context = { ...targetsOf(options), options, tls12Connected: false };
  const results: CheckResult[] = [];
  for (const name of CHECK_NAMES) {
    if (options.skip?.includes(name)) {
      results.push({ name, status: "skip", detail: "skipped by request" });
      continue;
    }
    try {
      results.push({ name, ...(await checks[name](ctx)) });
    } catch (error) {
      results.push({ name, status: "fail", detail: (error as Error).message.split("\n")[0] ?? "error" });
    }
  }
  return results;
}

export function formatResult(r: CheckResult): string {
  return `${r.status.toUpperCase().padEnd(4)}  ${r.name.padEnd(24)}  ${r.detail}`;
}
