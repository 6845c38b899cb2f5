import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { IdentityKey } from "../render/edge-js.js";
import { businessMessages } from "./fixtures/business-corpus.js";
import {
  DOMAIN,
  type EdgeRequest,
  type EdgeResponse,
  OPEN_LIMITS,
  rawTls,
  startTestEdge,
  type TestEdge,
} from "./fixtures/edge.js";

// Identity first (issue 14): the edge verifies the bearer token of every /v1/ request after the per-IP limits and
// before the WAF; a missing, forged, expired or malformed token gets the JSON 401 at the edge; the per-token limit
// keys on the verified token; verified requests' bodies are the gateway's schemas' to judge, so what businesses
// send is never refused; verified requests meet no ModSecurity but the edge's positive model (methods, path, query,
// header values, nginx's protocol checks) before the gateway's strict schemas; anonymous routes keep full CRS.

const KEY: IdentityKey = {
  secret: "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
  issuer: "wagate",
  audience: "wagate",
  toleranceSeconds: 30,
};

const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

function token(claims: Record<string, unknown> = {}, options: { key?: string; alg?: string } = {}): string {
  const head = b64({ alg: options.alg ?? "HS256", typ: "JWT" });
  const body = b64({
    sub: "backend",
    scope: "messages:send",
    iss: KEY.issuer,
    aud: KEY.audience,
    iat: now(),
    exp: now() + 3600,
    jti: `t-${Math.random().toString(36).slice(2)}`,
    ...claims,
  });
  const sig = createHmac("sha256", options.key ?? KEY.secret)
    .update(`${head}.${body}`)
    .digest("base64url");
  return `Bearer ${head}.${body}.${sig}`;
}

let edge: TestEdge;
let limited: TestEdge;

beforeAll(async () => {
  edge = await startTestEdge({ rateLimit: OPEN_LIMITS, identity: KEY });
  limited = await startTestEdge({
    identity: KEY,
    rateLimit: { perIp: { rate: 1, burst: 3 }, perToken: { rate: 1, burst: 2 } },
  });
}, 60_000);
afterAll(async () => {
  await edge?.close();
  await limited?.close();
});

const post = (path: string, body: unknown, authorization?: string, from?: string): EdgeRequest => ({
  method: "POST",
  path,
  from,
  headers: {
    "content-type": "application/json",
    ...(authorization ? { authorization } : {}),
  },
  body: JSON.stringify(body),
});

const text = (t: string) => ({ type: "text", to: "+15551234567", text: { body: t } });

describe("the bearer token is verified at the edge", () => {
  const refused: [string, () => string | undefined][] = [
    ["no Authorization header", () => undefined],
    ["not a bearer token", () => "Basic dXNlcjpwYXNz"],
    ["malformed", () => "Bearer not-a-jwt"],
    ["forged (another key)", () => token({}, { key: "another-key-another-key-another-key-0000" })],
    ["alg HS512 in the header", () => token({}, { alg: "HS512" })],
    ["alg none", () => `Bearer ${b64({ alg: "none" })}.${b64({ sub: "x", exp: now() + 60 })}.`],
    ["expired", () => token({ exp: now() - 120 })],
    ["not yet valid (nbf)", () => token({ nbf: now() + 600 })],
    ["another issuer", () => token({ iss: "someone-else" })],
    ["another audience", () => token({ aud: "other" })],
    ["no jti", () => token({ jti: undefined })],
    ["no exp", () => token({ exp: undefined })],
    // The same 32 signature bytes spelled another way (the last character's two unused bits set): one spelling only.
    [
      "signature in non-canonical base64url",
      () => {
        const t = token();
        const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        return t.slice(0, -1) + alphabet[alphabet.indexOf(t.slice(-1)) + 1];
      },
    ],
  ];
  for (const [name, make] of refused) {
    it(`${name}: JSON 401 at the edge, the gateway never sees it`, async () => {
      const before = edge.upstream.received.length;
      const res = await edge.send(post("/v1/messages", text("hello"), make()));
      expect(res.status).toBe(401);
      expect(JSON.parse(res.body).error.code).toBe("unauthorized");
      expect(edge.upstream.received.length).toBe(before);
    });
  }

  it("a valid token reaches the gateway, which keeps verifying it (the header is passed on)", async () => {
    const auth = token({ aud: ["wagate", "other"], nbf: now() - 5 });
    const res = await edge.send(post("/v1/messages", text("hello"), auth));
    expect(res.status).toBe(200);
    expect(edge.upstream.received.at(-1)?.headers.authorization).toBe(auth);
  });

  it("anonymous routes need no token: the health check and Meta's webhook", async () => {
    expect((await edge.send({ path: "/healthz" })).status).toBe(200);
    const res = await edge.send({ path: "/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=1" });
    expect(res.status).toBe(200);
  });
});

describe("the order: per-IP limits, then identity, then per-token limits", () => {
  it("a client without a token past its per-IP burst gets 429, not 401 (no token check is paid)", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++)
      statuses.push((await limited.send(post("/v1/messages", text("x"), undefined, "127.0.0.71"))).status);
    expect(statuses.slice(0, 4)).toEqual([401, 401, 401, 401]);
    expect(statuses.slice(4)).toContain(429);
  });

  it("the per-token limit counts verified tokens only: forged ones get 401 and use no token's budget", async () => {
    const auth = token();
    const forged = auth.replace(/.$/, (c) => (c === "A" ? "B" : "A"));
    // Forged tokens from several addresses: each 401, none counted against the real token.
    for (let i = 0; i < 3; i++)
      expect((await limited.send(post("/v1/messages", text("x"), forged, `127.0.0.7${2 + i}`))).status).toBe(
        401,
      );
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++)
      statuses.push(
        (await limited.send(post("/v1/messages", text("x"), auth, `127.0.0.7${5 + (i % 3)}`))).status,
      );
    expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
    expect(statuses).toContain(429);
  });
});

describe("what businesses send is never refused", () => {
  it("at least 500 messages in at least 10 languages, as text, template, broadcast, interactive and caption", {
    timeout: 600_000,
  }, async () => {
    const messages = businessMessages();
    expect(new Set(messages.map((m) => m.text)).size).toBeGreaterThanOrEqual(500);
    expect(new Set(messages.map((m) => m.language)).size).toBeGreaterThanOrEqual(10);
    const auth = token();
    const requests: { name: string; request: EdgeRequest }[] = [];
    messages.forEach(({ text: t, language }, i) => {
      const to = `+1555${String(1_000_000 + i)}`;
      const lang = language === "mixed" ? "en_US" : language;
      requests.push({ name: `text ${i}`, request: post("/v1/messages", { ...text(t), to }, auth) });
      requests.push({
        name: `template ${i}`,
        request: post(
          "/v1/messages",
          {
            type: "template",
            to,
            template: {
              name: "order_update",
              language: lang,
              components: [{ type: "body", parameters: [{ type: "text", text: t }] }],
            },
          },
          auth,
        ),
      });
      requests.push({
        name: `broadcast ${i}`,
        request: post(
          "/v1/broadcasts",
          {
            template: { name: "promo", language: lang },
            recipients: [{ to, parameters: [t, "Ana"] }],
          },
          auth,
        ),
      });
      requests.push({
        name: `interactive ${i}`,
        request: post(
          "/v1/messages",
          {
            type: "interactive",
            to,
            interactive: {
              type: "button",
              header: { type: "text", text: t.slice(0, 60) },
              body: { text: t },
              footer: { text: t.slice(0, 60) },
              action: { buttons: [{ type: "reply", reply: { id: `b${i}`, title: t.slice(0, 20) } }] },
            },
          },
          auth,
        ),
      });
      requests.push({
        name: `caption ${i}`,
        request: post(
          "/v1/messages",
          {
            type: "image",
            to,
            image: { link: `https://cdn.example.com/p/${i}.jpg?w=800&h=600`, caption: t },
          },
          auth,
        ),
      });
    });
    const refused: string[] = [];
    for (let i = 0; i < requests.length; i += 16) {
      const batch = requests.slice(i, i + 16);
      const answers: EdgeResponse[] = await Promise.all(batch.map((r) => edge.send(r.request)));
      answers.forEach((res, k) => {
        if (res.status !== 200) refused.push(`${batch[k]?.name}: ${res.status} ${res.body.slice(0, 80)}`);
      });
    }
    console.log(
      `business corpus: ${messages.length} messages, ${requests.length} requests, ${refused.length} refused`,
    );
    expect(refused).toEqual([]);
  });
});

describe("attacks, verified and anonymous", () => {
  const sqli = "x' UNION SELECT password FROM users--";

  it("anonymous: a body injection on /v1/ meets the edge's 401; on Meta's webhook (unsigned), CRS's 403", async () => {
    const before = edge.upstream.received.length;
    expect((await edge.send(post("/v1/messages", text(sqli)))).status).toBe(401);
    expect((await edge.send(post("/webhooks/whatsapp", { entry: [{ text: sqli }] }))).status).toBe(403);
    expect(edge.upstream.received.length).toBe(before);
  });

  it("anonymous: scanners, shellshock and header injection on Meta's webhook and /healthz meet CRS's 403", async () => {
    const before = edge.upstream.received.length;
    const headers: Record<string, string>[] = [
      { "x-client-info": "() { :; }; /bin/bash -c 'cat /etc/passwd'" },
      { "user-agent": "sqlmap/1.7.2#stable" },
      { referer: "https://e.com/?id=1' or '1'='1' --" },
    ];
    for (const path of ["/healthz", "/webhooks/whatsapp?hub.mode=subscribe&hub.challenge=1"])
      for (const h of headers)
        expect((await edge.send({ path, headers: h })).status, `${path} ${Object.keys(h)}`).toBe(403);
    expect(edge.upstream.received.length).toBe(before);
  });

  it("verified: no WAF, the positive model: path, query, method and header values the API does not take meet the edge's 400/405", async () => {
    const auth = token();
    const before = edge.upstream.received.length;
    const attacks: [EdgeRequest, number][] = [
      // Query parameters on a route whose schema takes none, or unknown ones where it takes some.
      [{ path: "/v1/messages/abc?status=1%27%20OR%20%271%27%3D%271", headers: { authorization: auth } }, 400],
      [
        { path: "/v1/replies?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", headers: { authorization: auth } },
        400,
      ],
      [
        { path: "/v1/webhooks/w1/deliveries?status=failed&sort=1;DROP", headers: { authorization: auth } },
        400,
      ],
      [{ path: "/v1/webhooks/w1/deliveries?limit=1%27", headers: { authorization: auth } }, 400],
      // Encoded bytes and dot segments in the path.
      [{ path: "/v1/messages/..%5c..%5c..%5cwindows%5cwin.ini", headers: { authorization: auth } }, 400],
      [{ path: "/v1/messages/./../replies", headers: { authorization: auth } }, 400],
      [{ path: "/v1/messages/%00", headers: { authorization: auth } }, 400],
      // Shellshock's function definition in any header.
      [
        {
          path: "/v1/messages/x",
          headers: { authorization: auth, "x-client-info": "() { :; }; /bin/bash -c 'cat /etc/passwd'" },
        },
        400,
      ],
      // Methods the routes do not have.
      [{ method: "PROPFIND", path: "/v1/messages/x", headers: { authorization: auth } }, 405],
      [{ method: "PUT", path: "/v1/messages", headers: { authorization: auth } }, 405],
      [post("/v1/otp", {}, auth), 200],
      [{ method: "GET", path: "/v1/otp/verify", headers: { authorization: auth } }, 405],
      [{ method: "DELETE", path: "/v1/broadcasts", headers: { authorization: auth } }, 405],
    ];
    let reached = 0;
    for (const [attack, status] of attacks) {
      const res = await edge.send(attack);
      expect(res.status, `${attack.method ?? "GET"} ${attack.path}`).toBe(status);
      if (status === 200) reached++;
      else
        expect(JSON.parse(res.body).error.code).toMatch(/^(invalid_request|bad_request|method_not_allowed)$/);
    }
    expect(edge.upstream.received.length).toBe(before + reached);
  });

  it("verified: what the API's routes take passes (ids, a query the schema declares, the API's methods)", async () => {
    const auth = token();
    const ok: EdgeRequest[] = [
      { path: "/v1/messages/01J9ZC4X5N8QK2W3E4R5T6Y7U8", headers: { authorization: auth } },
      {
        path: "/v1/webhooks/5f0c2d9e-8a41-4b7e-9c3a-1d2e3f405060/deliveries?status=failed&limit=10",
        headers: { authorization: auth },
      },
      { path: "/v1/replies?", headers: { authorization: auth } },
      {
        method: "PATCH",
        path: "/v1/replies/r_1",
        headers: { authorization: auth, "content-type": "application/json" },
        body: "{}",
      },
      { method: "DELETE", path: "/v1/webhooks/w-1", headers: { authorization: auth } },
      { method: "HEAD", path: "/v1/numbers/+15551234567", headers: { authorization: auth } },
      // The inbox's listings, a cursor and an E.164 contact as a client encodes it.
      {
        path: "/v1/messages?direction=in&contact=%2B14155550123&number=default&before=aS4xNzAwLjQy&limit=50",
        headers: { authorization: auth },
      },
      { path: "/v1/conversations?contact=+14155550123&limit=20", headers: { authorization: auth } },
      { path: "/v1/templates?number=default", headers: { authorization: auth } },
      // Meta's base64 message ids: `=` as sent, `/` and `+` percent-encoded.
      {
        method: "POST",
        path: "/v1/messages/wamid.HBgLMTQxNTU1NTAxMjMVAgASGBQzQUI%2FRTc%2BMkQA=/read",
        headers: { authorization: auth },
      },
    ];
    for (const req of ok)
      expect((await edge.send(req)).status, `${req.method ?? "GET"} ${req.path}`).toBe(200);
  });

  it("verified: request smuggling shapes are refused by nginx itself, in JSON", async () => {
    const auth = token();
    const body = JSON.stringify(text("hi"));
    const head = `POST /v1/messages HTTP/1.1\r\nHost: ${DOMAIN}\r\nAuthorization: ${auth}\r\nContent-Type: application/json\r\n`;
    const before = edge.upstream.received.length;
    const both = await rawTls(
      edge,
      `${head}Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
    );
    expect(both.status).toBe(400);
    const twice = await rawTls(
      edge,
      `${head}Content-Length: ${body.length}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(twice.status).toBe(400);
    const exotic = await rawTls(
      edge,
      `${head}Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`,
    );
    expect(exotic.status).toBe(501);
    for (const res of [both, twice, exotic]) {
      expect(res.headers["content-type"]).toBe("application/json");
      expect(JSON.parse(res.body).error.request_id).toMatch(/^[0-9a-f]{32}$/);
    }
    expect(edge.upstream.received.length).toBe(before);
  });

  it("verified: a body the JSON schema would refuse passes the edge unread (the gateway answers it)", async () => {
    const res = await edge.send(post("/v1/messages", { ...text(sqli), extra: "<script>" }, token()));
    expect(res.status).toBe(200);
    expect(edge.upstream.received.at(-1)?.body.toString()).toContain("UNION SELECT");
  });
});
