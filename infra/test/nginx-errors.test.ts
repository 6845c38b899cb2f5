import { connect as http2Connect } from "node:http2";
import { connect as netConnect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EDGE_ERRORS } from "../render/nginx.js";
import {
  DOMAIN,
  type EdgeResponse,
  OPEN_LIMITS,
  parseHttp1,
  rawTls,
  startTestEdge,
  type TestEdge,
} from "./fixtures/edge.js";

// Every status nginx produces itself answers in the gateway's error shape, with its request id, over HTTP/1.1 and
// HTTP/2: first each one nginx can be made to produce for real (a WAF denial, an unknown route, TRACE, a body or
// URI or header too large, a flood, an upstream that is down or too slow, plain HTTP on the TLS port), then every
// status of EDGE_ERRORS through a test-only location that returns it, so none is left to nginx's HTML pages.

let edge: TestEdge;
let limited: TestEdge;

const STATUSES = Object.keys(EDGE_ERRORS).map(Number);

beforeAll(async () => {
  const statusLocations = STATUSES.map((s) => `        location = /__status/${s} { return ${s}; }`);
  edge = await startTestEdge({
    rateLimit: OPEN_LIMITS,
    extraServerLines: [
      ...statusLocations,
      // An upstream nothing listens on (502), and the gateway answering later than the edge waits (504).
      "        location = /__down { proxy_pass http://127.0.0.1:9; }",
      "        location = /__slow { proxy_read_timeout 1s; proxy_pass http://wagate_gateway; }",
    ].join("\n"),
  });
  limited = await startTestEdge({ rateLimit: { perIp: { rate: 1, burst: 0 } } });
}, 60_000);
afterAll(async () => {
  await edge?.close();
  await limited?.close();
});

/** The JSON error the edge answers: status, the gateway's shape, the request id in body and header. */
function expectJsonError(res: EdgeResponse, status: number, code?: string): void {
  expect(res.status, res.body).toBe(status);
  expect(res.headers["content-type"]).toBe("application/json");
  const body = JSON.parse(res.body) as { error: { code: string; message: string; request_id: string } };
  expect(Object.keys(body)).toEqual(["error"]);
  expect(typeof body.error.message).toBe("string");
  if (code) expect(body.error.code).toBe(code);
  expect(body.error.request_id).toMatch(/^[0-9a-f]{32}$/);
  expect(res.headers["x-request-id"]).toBe(body.error.request_id);
  expect(res.body).not.toMatch(/<html|nginx/i);
}

function sendHttp2(
  target: TestEdge,
  req: { method?: string; path: string; headers?: Record<string, string>; body?: string },
): Promise<EdgeResponse> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`https://127.0.0.1:${target.layout.httpsPort}`, {
      ca: target.ca,
      servername: DOMAIN,
    });
    session.on("error", reject);
    const stream = session.request({
      ":method": req.method ?? "GET",
      ":path": req.path,
      ":authority": DOMAIN,
      ...req.headers,
    });
    let status = 0;
    let headers: Record<string, string | string[] | undefined> = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      headers = h as Record<string, string | string[] | undefined>;
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      session.close();
      resolve({ status, headers, body: Buffer.concat(chunks).toString() });
    });
    stream.on("error", (error) => {
      session.close();
      reject(error);
    });
    // Node ends a GET's stream itself (no body to send).
    if (!stream.writableEnded) stream.end(req.body ?? "");
  });
}

const sqli = "/v1/messages/abc?status=1%27%20OR%20%271%27%3D%271";

describe("statuses nginx produces for real answer JSON over HTTP/1.1", () => {
  it("400: a header line nginx cannot read", async () => {
    const res = await rawTls(edge, `GET /v1/messages/x HTTP/1.1\r\nHost: ${DOMAIN}\r\nno colon here\r\n\r\n`);
    expectJsonError(res, 400, "bad_request");
  });

  it("403: a WAF denial names no rule, and the audit log still has it under the request id", async () => {
    const res = await edge.send({ path: sqli });
    expectJsonError(res, 403, "forbidden");
    expect(JSON.parse(res.body)).toEqual({
      error: {
        code: "forbidden",
        message: EDGE_ERRORS[403]?.message,
        request_id: res.headers["x-request-id"],
      },
    });
    expect(EDGE_ERRORS[403]?.message).not.toMatch(/\d|rule|modsecurity/i);
    const requestId = String(res.headers["x-request-id"]);
    let audit = "";
    for (let i = 0; i < 50 && !audit.includes(requestId); i++) {
      audit = await edge.auditLog();
      await new Promise((r) => setTimeout(r, 40));
    }
    const entry = audit
      .split("\n")
      .filter(Boolean)
      .map(
        (l) =>
          JSON.parse(l) as {
            transaction: { unique_id: string; messages: { details: { ruleId: string } }[] };
          },
      )
      .find((e) => e.transaction.unique_id === requestId);
    expect(entry?.transaction.messages.map((m) => m.details.ruleId)).toContain("949110");
  });

  it("404: a route the edge does not know", async () => {
    expectJsonError(await edge.send({ path: "/wp-admin/" }), 404, "not_found");
  });

  it("405: TRACE", async () => {
    expectJsonError(await edge.send({ method: "TRACE", path: "/v1/messages" }), 405, "method_not_allowed");
  });

  it("413: a body larger than the route allows", async () => {
    const res = await edge.send({
      method: "POST",
      path: "/v1/otp",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: "+15551234567", pad: "x".repeat(64 * 1024) }),
    });
    expectJsonError(res, 413, "payload_too_large");
  });

  it("414: a URI longer than the header buffers", async () => {
    expectJsonError(await edge.send({ path: `/v1/messages/${"a".repeat(20_000)}` }), 414, "uri_too_long");
  });

  it("431 (nginx's 494): a header larger than the header buffers", async () => {
    const res = await edge.send({ path: "/v1/messages/x", headers: { "x-big": "b".repeat(20_000) } });
    expectJsonError(res, 431, "headers_too_large");
  });

  it("429: past the per-IP limit", async () => {
    const answers: EdgeResponse[] = [];
    for (let i = 0; i < 4; i++) answers.push(await limited.send({ path: "/healthz", from: "127.0.0.61" }));
    const refused = answers.find((r) => r.status === 429);
    expect(refused, answers.map((r) => r.status).join(",")).toBeDefined();
    if (refused) expectJsonError(refused, 429, "rate_limited");
  });

  it("502: the upstream is down; 504: the upstream is too slow", async () => {
    expectJsonError(await edge.send({ path: "/__down" }), 502, "unavailable");
    const slow = await edge.send({ path: "/__slow", headers: { "x-test-delay-ms": "3000" } });
    expectJsonError(slow, 504, "timeout");
  });

  it("plain HTTP sent to the TLS port (nginx's 497) answers 400 JSON", async () => {
    const res = await new Promise<EdgeResponse>((resolve, reject) => {
      const socket = netConnect(edge.layout.httpsPort, "127.0.0.1", () =>
        socket.write(`GET /v1/messages HTTP/1.1\r\nHost: ${DOMAIN}\r\nConnection: close\r\n\r\n`),
      );
      const chunks: Buffer[] = [];
      socket.on("data", (c: Buffer) => chunks.push(c));
      socket.on("error", reject);
      socket.on("close", () => resolve(parseHttp1(Buffer.concat(chunks).toString())));
    });
    expectJsonError(res, 400, "bad_request");
  });

  it("408: nginx closes a connection whose body stops arriving, without an HTML page", async () => {
    // nginx answers nothing on a timeout (it only closes); what must never come back is its HTML.
    const res = await rawTls(
      edge,
      `POST /v1/messages HTTP/1.1\r\nHost: ${DOMAIN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"to":`,
    );
    expect(res.body).not.toMatch(/<html/i);
    expect([0, 408]).toContain(Number.isNaN(res.status) ? 0 : res.status);
  }, 30_000);
});

describe("over HTTP/2", () => {
  it("403, 404, 405, 413 and 429 answer JSON", async () => {
    expectJsonError(await sendHttp2(edge, { path: sqli }), 403, "forbidden");
    expectJsonError(await sendHttp2(edge, { path: "/nowhere" }), 404, "not_found");
    expectJsonError(await sendHttp2(edge, { method: "TRACE", path: "/v1/messages" }), 405);
    expectJsonError(
      await sendHttp2(edge, {
        method: "POST",
        path: "/v1/otp",
        headers: { "content-type": "application/json" },
        body: "x".repeat(64 * 1024),
      }),
      413,
    );
    const answers: EdgeResponse[] = [];
    for (let i = 0; i < 4; i++) answers.push(await sendHttp2(limited, { path: "/healthz" }));
    const refused = answers.find((r) => r.status === 429);
    expect(refused, answers.map((r) => r.status).join(",")).toBeDefined();
    if (refused) expectJsonError(refused, 429, "rate_limited");
  });
});

describe("every status of EDGE_ERRORS answers JSON (a test-only location returns each)", () => {
  // nginx never sends a 408 (it closes the connection; tested above): every other status is returned here.
  for (const status of STATUSES.filter((s) => s !== 408)) {
    const e = EDGE_ERRORS[status];
    const answered = e?.as ?? status;
    it(`${status} → ${answered} ${e?.code} over HTTP/1.1 and HTTP/2`, async () => {
      expectJsonError(await edge.send({ path: `/__status/${status}` }), answered, e?.code);
      expectJsonError(await sendHttp2(edge, { path: `/__status/${status}` }), answered, e?.code);
    });
  }
});
