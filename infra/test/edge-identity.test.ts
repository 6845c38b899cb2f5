import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { IdentityKey } from "../render/edge-js.js";
import { businessMessages } from "./fixtures/business-corpus.js";
import {
  type EdgeRequest,
  type EdgeResponse,
  OPEN_LIMITS,
  startTestEdge,
  type TestEdge,
} from "./fixtures/edge.js";

// Identity first (issue 14): the edge verifies the bearer token of every /v1/ request after the per-IP limits and
// before the WAF; a missing, forged, expired or malformed token gets the JSON 401 at the edge; the per-token limit
// keys on the verified token; verified requests' bodies are the gateway's schemas' to judge, so what businesses
// send is never refused, while their query string and headers still meet CRS; anonymous routes keep full CRS.

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

  it("verified: injections in the query string and headers, scanners and shellshock still meet CRS's 403", async () => {
    const auth = token();
    const before = edge.upstream.received.length;
    const attacks: EdgeRequest[] = [
      { path: "/v1/messages/abc?status=1%27%20OR%20%271%27%3D%271", headers: { authorization: auth } },
      { path: "/v1/replies?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", headers: { authorization: auth } },
      { path: "/v1/messages/..%5c..%5c..%5cwindows%5cwin.ini", headers: { authorization: auth } },
      {
        path: "/v1/messages/x",
        headers: { authorization: auth, "x-client-info": "() { :; }; /bin/bash -c 'cat /etc/passwd'" },
      },
      { path: "/v1/messages/x", headers: { authorization: auth, "user-agent": "sqlmap/1.7.2#stable" } },
      {
        path: "/v1/messages/x",
        headers: { authorization: auth, referer: "https://e.com/?id=1' or '1'='1' --" },
      },
    ];
    for (const attack of attacks) expect((await edge.send(attack)).status, attack.path).toBe(403);
    expect(edge.upstream.received.length).toBe(before);
  });

  it("verified: a body the JSON schema would refuse passes the edge unread (the gateway answers it)", async () => {
    const res = await edge.send(post("/v1/messages", { ...text(sqli), extra: "<script>" }, token()));
    expect(res.status).toBe(200);
    expect(edge.upstream.received.at(-1)?.body.toString()).toContain("UNION SELECT");
  });
});
