import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bearer } from "./fixtures/benign-corpus.js";
import { type EdgeRequest, type EdgeResponse, startTestEdge, type TestEdge } from "./fixtures/edge.js";

// nginx's limits as rendered: per client IP, stricter for OTP routes, per bearer token, concurrent connections.
// Rates are tiny (1 per second, 1 per minute) so the bucket barely refills while a test runs; each test is a
// different client address in 127.0.0.0/8, so tests do not share buckets.

const PER_IP_BURST = 10;
const OTP_BURST = 2;
const TOKEN_BURST = 3;

/** wagate:trustedCidrs of this edge: the operator's backends. */
const TRUSTED = "127.0.0.80/29";

let edge: TestEdge;

beforeAll(async () => {
  edge = await startTestEdge({
    rateLimit: {
      perIp: { rate: 1, burst: PER_IP_BURST },
      otpPerMinute: { rate: 1, burst: OTP_BURST },
      perToken: { rate: 1, burst: TOKEN_BURST },
      connectionsPerIp: 2,
    },
    trustedCidrs: [TRUSTED],
  });
});
afterAll(async () => {
  await edge?.close();
});

const message = (from: string, headers: Record<string, string> = {}): EdgeRequest => ({
  method: "POST",
  path: "/v1/messages",
  from,
  headers: { "content-type": "application/json", ...headers },
  body: JSON.stringify({ to: "+15551234567", text: "hello" }),
});

async function sequence(requests: EdgeRequest[]): Promise<EdgeResponse[]> {
  const out: EdgeResponse[] = [];
  for (const r of requests) out.push(await edge.send(r));
  return out;
}

describe("per client IP", () => {
  it("a burst gets 429 once it exceeds the burst; another client is not affected", async () => {
    const results = await sequence(Array.from({ length: 30 }, () => message("127.0.0.2")));
    const statuses = results.map((r) => r.status);
    // The first burst+1 pass; refused ones are 429, never anything else.
    expect(statuses.slice(0, PER_IP_BURST + 1)).toEqual(Array(PER_IP_BURST + 1).fill(200));
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);

    const refused = results.find((r) => r.status === 429);
    expect(JSON.parse(refused?.body ?? "{}")).toEqual({
      error: {
        code: "rate_limited",
        message: "Too many requests; slow down and retry later",
        request_id: refused?.headers["x-request-id"],
      },
    });
    expect(refused?.headers["retry-after"]).toBe("1");
    expect(refused?.headers["strict-transport-security"]).toBe("max-age=63072000");
    expect(await edge.accessEntry(refused?.headers["x-request-id"])).toMatchObject({
      remote_addr: "127.0.0.2",
      edge: "rate",
      status: 429,
      upstream_status: "",
    });

    const other = await sequence(Array.from({ length: 5 }, () => message("127.0.0.3")));
    expect(other.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
  });

  it("refused requests never reach the WAF: an attack flood turns into 429s, and only admitted ones are audited", async () => {
    const attack: EdgeRequest = { path: "/v1/messages/x?id=1%27%20OR%20%271%27%3D%271", from: "127.0.0.9" };
    const results = await sequence(Array.from({ length: 30 }, () => attack));
    const denied = results.filter((r) => r.status === 403);
    const limited = results.filter((r) => r.status === 429);
    expect(denied.length + limited.length).toBe(30);
    expect(denied.length).toBeGreaterThanOrEqual(PER_IP_BURST + 1);
    expect(limited.length).toBeGreaterThan(0);
    await edge.accessEntry(results.at(-1)?.headers["x-request-id"]);
    const audited = (await edge.auditLog()).split("\n").filter((l) => l.includes('"client_ip":"127.0.0.9"'));
    expect(audited.length).toBe(denied.length);
  });
});

describe("OTP routes", () => {
  it("have a stricter zone: refused after their own burst while other routes still answer", async () => {
    const otp: EdgeRequest = {
      method: "POST",
      path: "/v1/otp",
      from: "127.0.0.4",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: "+15551234567" }),
    };
    const results = await sequence(Array.from({ length: 6 }, () => otp));
    expect(results.map((r) => r.status)).toEqual([
      ...Array(OTP_BURST + 1).fill(200),
      ...Array(6 - OTP_BURST - 1).fill(429),
    ]);
    const verify = await edge.send({
      ...otp,
      path: "/v1/otp/verify",
      body: JSON.stringify({ to: "+15551234567", code: "123456" }),
    });
    expect(verify.status).toBe(429);
    expect((await edge.send(message("127.0.0.4"))).status).toBe(200);
  });
});

describe("per bearer token", () => {
  it("one token is limited across client IPs; another token is not", async () => {
    const token = bearer(77);
    const ips = ["127.0.0.5", "127.0.0.6", "127.0.0.7"];
    const results = await sequence(
      ips.flatMap((ip) => [message(ip, { authorization: token }), message(ip, { authorization: token })]),
    );
    expect(results.map((r) => r.status)).toEqual([
      ...Array(TOKEN_BURST + 1).fill(200),
      ...Array(6 - TOKEN_BURST - 1).fill(429),
    ]);
    expect((await edge.send(message("127.0.0.5", { authorization: bearer(78) }))).status).toBe(200);
  });
});

describe("concurrent connections per IP", () => {
  it("beyond the limit, requests in flight get 429 (logged as conn)", async () => {
    const slow = () => message("127.0.0.10", { "x-test-delay-ms": "1500" });
    const results = await Promise.all(Array.from({ length: 6 }, () => edge.send(slow())));
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(ok.length).toBeGreaterThanOrEqual(1);
    expect(ok.length).toBeLessThanOrEqual(2);
    expect(refused.length).toBe(6 - ok.length);
    expect(await edge.accessEntry(refused[0]?.headers["x-request-id"])).toMatchObject({
      edge: "conn",
      status: 429,
    });
  });
});

describe("trusted backends (wagate:trustedCidrs)", () => {
  it("are not limited per IP, but their tokens are", async () => {
    // Three times the per-IP burst from one trusted address, each request with its own token: none refused.
    const many = await sequence(
      Array.from({ length: PER_IP_BURST * 3 }, (_, i) =>
        message("127.0.0.81", { authorization: bearer(8100 + i) }),
      ),
    );
    expect(many.map((r) => r.status)).toEqual(Array(PER_IP_BURST * 3).fill(200));
    // The same from an untrusted neighbour is refused past its burst (the control).
    const neighbour = await sequence(
      Array.from({ length: PER_IP_BURST * 3 }, (_, i) =>
        message("127.0.0.88", { authorization: bearer(8200 + i) }),
      ),
    );
    expect(neighbour.filter((r) => r.status === 429).length).toBeGreaterThan(0);
    // One token from the trusted address: refused past the token's burst.
    const token = bearer(8300);
    const statuses = (
      await sequence(
        Array.from({ length: TOKEN_BURST + 5 }, () => message("127.0.0.82", { authorization: token })),
      )
    ).map((r) => r.status);
    expect(statuses.slice(0, TOKEN_BURST + 1)).toEqual(Array(TOKEN_BURST + 1).fill(200));
    expect(statuses).toContain(429);
  });
});
