import { createHmac, randomBytes } from "node:crypto";
import { request } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { IdentityKey } from "../render/edge-js.js";
import { localLayout, vmLayout } from "../render/layout.js";
import { renderNginx } from "../render/nginx.js";
import { rateLimitSchema, wafSchema } from "../render/settings.js";
import { DOMAIN, OPEN_LIMITS, startTestEdge, type TestEdge } from "./fixtures/edge.js";

// POST /v1/media at the edge: its own body limit (100 MB), the body streamed to the gateway as it arrives
// (proxy_request_buffering off), and no ModSecurity for clients whose token the edge verified (a JPEG is nothing
// CRS can read; CRS would refuse its content type). Anonymous uploads get the edge's 401 and never reach the
// gateway. Real nginx + ModSecurity + CRS of the Debian 13 root, a real echo upstream.

const KEY: IdentityKey = {
  secret: "1f2e3d4c5b6a79888796a5b4c3d2e1f01f2e3d4c5b6a79888796a5b4c3d2e1f0",
  issuer: "wagate",
  audience: "wagate",
  toleranceSeconds: 30,
};
const MB = 1024 * 1024;

function token(): string {
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({
    sub: "backend",
    scope: "messages:send",
    iss: KEY.issuer,
    aud: KEY.audience,
    iat: now,
    exp: now + 3600,
    jti: `t-${randomBytes(6).toString("hex")}`,
  });
  return `Bearer ${head}.${body}.${createHmac("sha256", KEY.secret).update(`${head}.${body}`).digest("base64url")}`;
}

const jpeg = (size: number) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(size - 4)]);

let edge: TestEdge;
beforeAll(async () => {
  edge = await startTestEdge({ rateLimit: OPEN_LIMITS, identity: KEY });
}, 120_000);
afterAll(async () => {
  await edge?.close();
});

/**
 * Sends `body` in two halves; between them waits for `between` (e.g. until the upstream saw the request).
 * Resolves with the status and body of the answer, whenever it comes.
 */
function upload(
  body: Buffer,
  headers: Record<string, string>,
  between: () => Promise<void> = async () => {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1",
      port: edge.layout.httpsPort,
      servername: DOMAIN,
      ca: edge.ca,
      method: "POST",
      path: "/v1/media",
      agent: false,
      headers: { host: DOMAIN, "content-length": String(body.length), ...headers },
    });
    req.on("response", (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    // Writes after an early answer (401, 413) may fail: the answer is what counts.
    req.on("error", (error) => setTimeout(() => reject(error), 1000));
    const half = Math.floor(body.length / 2);
    req.write(body.subarray(0, half));
    between()
      .then(() => req.end(body.subarray(half)))
      .catch((error: unknown) => {
        req.destroy();
        reject(error);
      });
  });
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("POST /v1/media at the edge", () => {
  it("a verified 20 MB JPEG streams through: the gateway sees the request before the client sent its second half, and every byte", async () => {
    const image = jpeg(20 * MB);
    const before = edge.upstream.begun.length;
    const res = await upload(image, { authorization: token(), "content-type": "image/jpeg" }, () =>
      until(
        () => edge.upstream.begun.slice(before).includes("/v1/media"),
        "the upstream to see the upload start",
      ),
    );
    expect(res.status).toBe(200);
    const received = edge.upstream.received.at(-1);
    expect(received?.url).toBe("/v1/media");
    expect(received?.body.equals(image)).toBe(true);
  });

  it("anonymous: the edge's 401, the gateway never sees it", async () => {
    const before = edge.upstream.begun.length;
    const res = await upload(jpeg(64 * 1024), { "content-type": "image/jpeg" });
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).error.code).toBe("unauthorized");
    expect(edge.upstream.begun.length).toBe(before);
  });

  it("over 100 MB by Content-Length: 413 at the edge", async () => {
    const before = edge.upstream.begun.length;
    const res = await new Promise<number>((resolve, reject) => {
      const req = request({
        host: "127.0.0.1",
        port: edge.layout.httpsPort,
        servername: DOMAIN,
        ca: edge.ca,
        method: "POST",
        path: "/v1/media",
        agent: false,
        headers: {
          host: DOMAIN,
          authorization: token(),
          "content-type": "application/pdf",
          "content-length": String(100 * MB + 1),
        },
      });
      req.on("response", (r) => {
        r.resume();
        resolve(r.statusCode ?? 0);
      });
      req.on("error", reject);
      req.write(Buffer.from("%PDF-1.7\n"));
    });
    expect(res).toBe(413);
    expect(edge.upstream.begun.length).toBe(before);
  });

  it("other API routes keep the small body limit", async () => {
    const res = await edge.send({
      method: "POST",
      path: "/v1/messages",
      headers: { authorization: token(), "content-type": "application/json" },
      body: JSON.stringify({ type: "text", to: "+15551234567", text: { body: "x".repeat(200 * 1024) } }),
    });
    expect(res.status).toBe(413);
  });
});

describe("without the edge's token check", () => {
  it("the WAF stays on for the media route: CRS refuses a binary content type (403), the gateway never sees it", async () => {
    const plain = await startTestEdge({ rateLimit: OPEN_LIMITS });
    try {
      const res = await plain.send({
        method: "POST",
        path: "/v1/media",
        headers: { authorization: token(), "content-type": "image/jpeg" },
        body: jpeg(64 * 1024),
      });
      expect(res.status).toBe(403);
      expect(plain.upstream.begun.length).toBe(0);
      expect(await plain.errorLog()).toContain('[id "949110"]');
    } finally {
      await plain.close();
    }
  }, 120_000);
});

describe("the media route as rendered", () => {
  const render = (identity: boolean) =>
    renderNginx({
      domain: "api.example.com",
      rateLimit: rateLimitSchema.parse({}),
      waf: wafSchema.parse({}),
      layout: identity ? localLayout("/tmp/x", { http: 8080, https: 8443, upstream: 9000 }) : vmLayout(),
      ...(identity ? { identity: { keyFile: "/tmp/x/identity.json" } } : {}),
    })["nginx.conf"] ?? "";
  const block = (conf: string, name: string) => {
    const start = conf.indexOf(`location ${name} {`);
    return conf.slice(start, conf.indexOf("\n        }", start));
  };

  it("with the edge's token check: 100m, no request buffering, ModSecurity off", () => {
    const conf = render(true);
    // Verified requests go straight from the token check to the gateway (no ModSecurity on any verified route).
    const named = block(conf, "@wagate_media_identity");
    expect(block(conf, "= /v1/media")).toContain("client_max_body_size 100m;");
    expect(named).toContain("client_max_body_size 100m;");
    expect(named).toContain("proxy_request_buffering off;");
    expect(named).not.toContain("modsecurity on;");
  });

  it("without it (no verified identity at the edge): the WAF stays on for the media route", () => {
    const named = block(render(false), "@wagate_media");
    expect(named).toContain("modsecurity on;");
    expect(named).toContain("proxy_request_buffering off;");
  });
});
