import { createHmac } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { get } from "node:http";
import { join } from "node:path";
import { connect, createServer as createTlsServer, type SecureVersion } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACCESS_LOG_FIELDS } from "../render/nginx.js";
import { DOMAIN, type EdgeResponse, OPEN_LIMITS, startTestEdge, type TestEdge } from "./fixtures/edge.js";

// The rendered edge, run for real: port 80, TLS, headers, internal routes, proxying, the access log, body limits.

let edge: TestEdge;

beforeAll(async () => {
  edge = await startTestEdge({ rateLimit: OPEN_LIMITS });
});
afterAll(async () => {
  await edge?.close();
});

/**
 * The security headers every answer on 443 must carry, written out here rather than read from the renderer's
 * SECURITY_HEADERS: a header dropped or weakened there must fail this test.
 */
const EXPECTED_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "strict-transport-security": "max-age=63072000",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "accelerometer=(), camera=(), geolocation=(), microphone=(), payment=(), usb=()",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "x-permitted-cross-domain-policies": "none",
};

/** One line per expected security header the answer lacks or carries with another value. */
function securityHeaderProblems(res: EdgeResponse): string[] {
  return Object.entries(EXPECTED_SECURITY_HEADERS).flatMap(([name, value]) =>
    res.headers[name] === value ? [] : [`${name}: ${JSON.stringify(res.headers[name])}`],
  );
}

function httpGet(port: number, path: string): Promise<{ status: number; location?: string; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path, headers: { host: DOMAIN } }, (res) => {
      let body = "";
      res.on("data", (c) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, location: res.headers.location, body }));
    }).on("error", reject);
  });
}

/** Completes a TLS handshake limited to [min, max], or rejects with the handshake error. */
function handshake(port: number, min: SecureVersion, max: SecureVersion, ca?: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: "127.0.0.1",
      port,
      servername: DOMAIN,
      minVersion: min,
      maxVersion: max,
      // Lets this client offer TLS 1.0/1.1 at all (OpenSSL 3 refuses them at its default security level), so a
      // refusal below comes from the server.
      ciphers: "DEFAULT@SECLEVEL=0",
      ...(ca ? { ca } : { rejectUnauthorized: false }),
    });
    socket.once("secureConnect", () => {
      const protocol = socket.getProtocol() ?? "";
      socket.destroy();
      resolve(protocol);
    });
    socket.once("error", reject);
  });
}

describe("port 80", () => {
  it("redirects everything to HTTPS on the configured domain", async () => {
    const res = await httpGet(edge.layout.httpPort, "/v1/messages?x=1");
    expect(res.status).toBe(301);
    expect(res.location).toBe(`https://${DOMAIN}:${edge.layout.httpsPort}/v1/messages?x=1`);
  });

  it("serves the ACME HTTP-01 challenge from the webroot", async () => {
    const dir = join(edge.layout.acmeWebroot, ".well-known", "acme-challenge");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "token-abc_123"), "token-abc_123.thumbprint");
    const res = await httpGet(edge.layout.httpPort, "/.well-known/acme-challenge/token-abc_123");
    expect(res.status).toBe(200);
    expect(res.body).toBe("token-abc_123.thumbprint");
    expect((await httpGet(edge.layout.httpPort, "/.well-known/acme-challenge/missing")).status).toBe(404);
  });
});

describe("TLS", () => {
  it("the test client can speak TLS 1.0 and 1.1 (so refusals below are the edge's)", async () => {
    const server = createTlsServer({
      key: await import("node:fs/promises").then((fs) => fs.readFile(edge.layout.certificateKey)),
      cert: edge.ca,
      minVersion: "TLSv1",
      ciphers: "DEFAULT@SECLEVEL=0",
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const address = server.address();
      if (typeof address !== "object" || !address) throw new Error("no address");
      expect(await handshake(address.port, "TLSv1", "TLSv1")).toBe("TLSv1");
      expect(await handshake(address.port, "TLSv1.1", "TLSv1.1")).toBe("TLSv1.1");
    } finally {
      server.close();
    }
  });

  it("refuses TLS 1.0 and 1.1", async () => {
    await expect(handshake(edge.layout.httpsPort, "TLSv1", "TLSv1")).rejects.toThrow();
    await expect(handshake(edge.layout.httpsPort, "TLSv1.1", "TLSv1.1")).rejects.toThrow();
  });

  it("accepts TLS 1.2 and 1.3 with the configured certificate", async () => {
    expect(await handshake(edge.layout.httpsPort, "TLSv1.2", "TLSv1.2", edge.ca)).toBe("TLSv1.2");
    expect(await handshake(edge.layout.httpsPort, "TLSv1.3", "TLSv1.3", edge.ca)).toBe("TLSv1.3");
  });
});

describe("port 443", () => {
  it("proxies to the gateway with every security header and no server version", async () => {
    const res = await edge.send({
      method: "POST",
      path: "/v1/messages",
      headers: { "content-type": "application/json", "x-forwarded-for": "6.6.6.6" },
      body: JSON.stringify({ to: "+15551234567", text: "hello" }),
    });
    expect(res.status).toBe(200);
    expect(securityHeaderProblems(res)).toEqual([]);
    expect(res.headers.server).toBe("nginx");
    expect(res.headers["x-powered-by"]).toBeUndefined();
    const requestId = res.headers["x-request-id"];
    expect(requestId).toMatch(/^[0-9a-f]{32}$/);
    const seen = edge.upstream.received.at(-1);
    expect(seen?.url).toBe("/v1/messages");
    // nginx is the first hop: a client's own X-Forwarded-For is replaced by the real peer address.
    expect(seen?.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen?.headers["x-forwarded-proto"]).toBe("https");
    expect(seen?.headers["x-request-id"]).toBe(requestId);
    expect(seen?.headers.host).toBe(DOMAIN);
  });

  it("answers edge errors as JSON, with the security headers too", async () => {
    const res = await edge.send({ path: "/nowhere" });
    expect(res.status).toBe(404);
    expect(res.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(res.body)).toEqual({
      error: { code: "not_found", message: "Not found", request_id: res.headers["x-request-id"] },
    });
    expect(securityHeaderProblems(res)).toEqual([]);
    // The WAF's refusals too.
    const refused = await edge.send({ path: "/v1/messages/x?id=1%27%20OR%20%271%27%3D%271" });
    expect(refused.status).toBe(403);
    expect(securityHeaderProblems(refused)).toEqual([]);
  });

  it("the header check fails on a broken copy of the edge without CSP, COOP, CORP, Permissions-Policy, Cache-Control", async () => {
    const dropped = [
      "Content-Security-Policy",
      "Cross-Origin-Opener-Policy",
      "Cross-Origin-Resource-Policy",
      "Permissions-Policy",
      "Cache-Control",
    ];
    const weak = await startTestEdge({
      rateLimit: OPEN_LIMITS,
      weaken: (files) => {
        let conf = files["nginx.conf"] ?? "";
        for (const name of dropped) {
          const line = new RegExp(`\\n\\s*add_header ${name} [^\\n]*`, "g");
          expect(conf, name).toMatch(line);
          conf = conf.replace(line, "");
        }
        return { ...files, "nginx.conf": conf };
      },
    });
    try {
      const res = await weak.send({ path: "/healthz" });
      expect(res.status).toBe(200);
      expect(securityHeaderProblems(res).map((p) => p.split(":")[0])).toEqual([
        "content-security-policy",
        "cross-origin-opener-policy",
        "cross-origin-resource-policy",
        "permissions-policy",
        "cache-control",
      ]);
    } finally {
      await weak.close();
    }
  });

  it("refuses /metrics and /readyz at the edge: the gateway never sees them", async () => {
    const before = edge.upstream.received.length;
    for (const path of ["/metrics", "/readyz", "/metrics?x=1", "/readyz/"]) {
      const res = await edge.send({ path });
      expect(res.status, path).toBe(404);
    }
    expect(edge.upstream.received.length).toBe(before);
    expect((await edge.send({ path: "/healthz" })).status).toBe(200);
  });

  it("writes one JSON object per line with the documented fields, and never the query string", async () => {
    await edge.send({
      path: "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-secret-123&hub.challenge=42",
    });
    // nginx writes the line after it answered: wait for it.
    let lines = await edge.accessLog();
    for (let i = 0; i < 100 && !String(lines.at(-1)?.request).startsWith("GET /webhooks/"); i++) {
      await new Promise((r) => setTimeout(r, 50));
      lines = await edge.accessLog();
    }
    const last = lines.at(-1);
    expect(Object.keys(last ?? {})).toEqual(Object.keys(ACCESS_LOG_FIELDS));
    expect(last).toMatchObject({
      remote_addr: "127.0.0.1",
      status: 200,
      request: "GET /webhooks/whatsapp HTTP/1.1",
      edge: "",
      upstream_status: "200",
      tls: expect.stringMatching(/^TLSv1\.[23]$/),
    });
    expect(typeof last?.request_time).toBe("number");
    expect(JSON.stringify(lines)).not.toContain("verify-secret-123");
  });

  it("refuses a body larger than its route allows with 413, before the gateway", async () => {
    const before = edge.upstream.received.length;
    const res = await edge.send({
      method: "POST",
      path: "/v1/messages",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: "+15551234567", text: "x".repeat(200 * 1024) }),
    });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).error.code).toBe("payload_too_large");
    expect(edge.upstream.received.length).toBe(before);
    // nginx writes the line after it answered: wait for this request's own line.
    const requestId = res.headers["x-request-id"];
    expect(requestId).toMatch(/^[0-9a-f]{32}$/);
    let entry: Record<string, unknown> | undefined;
    for (let i = 0; i < 100 && !entry; i++) {
      entry = (await edge.accessLog()).find((l) => l.request_id === requestId);
      if (!entry) await new Promise((r) => setTimeout(r, 50));
    }
    expect(entry?.edge).toBe("size");
  });
});

describe("the largest valid request of every route passes", () => {
  const e164 = (i: number) => `+1555${String(i).padStart(7, "0")}`;

  it("a broadcast to 100,000 recipients (about 1.6 MB of JSON)", { timeout: 60_000 }, async () => {
    const body = JSON.stringify({
      name: "Spring sale",
      template: { name: "spring_sale", language: "en_US" },
      recipients: Array.from({ length: 100_000 }, (_, i) => e164(i)),
    });
    expect(body.length).toBeGreaterThan(1_500_000);
    const res = await edge.send({
      method: "POST",
      path: "/v1/broadcasts",
      headers: { "content-type": "application/json", authorization: "Bearer a.b.c" },
      body,
    });
    expect(res.status).toBe(200);
    expect(edge.upstream.received.at(-1)?.body.toString()).toBe(body);
  });

  it("a 100,000-recipient broadcast with per-recipient parameters", { timeout: 60_000 }, async () => {
    const body = JSON.stringify({
      template: { name: "order_ready", language: "pt_BR" },
      recipients: Array.from({ length: 100_000 }, (_, i) => ({ to: e164(i), parameters: [`Cliente ${i}`] })),
    });
    const res = await edge.send({
      method: "POST",
      path: "/v1/broadcasts",
      headers: { "content-type": "application/json" },
      body,
    });
    expect(res.status).toBe(200);
    expect(edge.upstream.received.at(-1)?.body.length).toBe(Buffer.byteLength(body));
  });

  it("a signed 3 MB Meta webhook", { timeout: 60_000 }, async () => {
    const messages: object[] = [];
    for (let i = 0, size = 0; size < 3 * 1024 * 1024 - 4096; i++) {
      const message = {
        from: e164(i),
        id: `wamid.HBgLMTU1NTEyMzQ1NjcVAgASGBQzQTdCN0U4${String(i).padStart(8, "0")}`,
        timestamp: "1732665600",
        type: "text",
        text: {
          body: `Olá! Pedido número ${i}, obrigado 🙏 — can you confirm delivery for tomorrow at 10:00?`,
        },
      };
      messages.push(message);
      size += Buffer.byteLength(JSON.stringify(message)) + 1;
    }
    const body = JSON.stringify({
      object: "whatsapp_business_account",
      entry: [
        {
          id: "102290129340398",
          changes: [{ field: "messages", value: { messaging_product: "whatsapp", messages } }],
        },
      ],
    });
    expect(body.length).toBeGreaterThan(3_000_000);
    const signature = `sha256=${createHmac("sha256", "app-secret").update(body).digest("hex")}`;
    const res = await edge.send({
      method: "POST",
      path: "/webhooks/whatsapp",
      headers: {
        "content-type": "application/json",
        "x-hub-signature-256": signature,
        "user-agent": "facebookexternalua",
      },
      body,
    });
    expect(res.status).toBe(200);
    expect(edge.upstream.received.at(-1)?.body.toString()).toBe(body);
  });

  it("an OTP verification and a 4,096-character message", async () => {
    const otp = await edge.send({
      method: "POST",
      path: "/v1/otp/verify",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: "+15551234567", code: "123456" }),
    });
    expect(otp.status).toBe(200);
    const text = "Ünïcödé ✓ ".repeat(410).slice(0, 4096);
    const message = await edge.send({
      method: "POST",
      path: "/v1/messages",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ to: "+15551234567", text }),
    });
    expect(message.status).toBe(200);
  });
});

describe("reload", () => {
  function servedCertificate(): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect({
        host: "127.0.0.1",
        port: edge.layout.httpsPort,
        servername: DOMAIN,
        rejectUnauthorized: false,
      });
      socket.once("secureConnect", () => {
        const fingerprint = socket.getPeerCertificate().fingerprint256;
        socket.destroy();
        resolve(fingerprint);
      });
      socket.once("error", reject);
    });
  }

  it("serves a replaced certificate after reload(), without a restart", async () => {
    const before = await servedCertificate();
    const { writeSelfSignedCertificate } = await import("../../scripts/lib/nginx.js");
    await writeSelfSignedCertificate(edge.layout, DOMAIN, { overwrite: true });
    await edge.nginx.reload();
    const { X509Certificate } = await import("node:crypto");
    const { readFile } = await import("node:fs/promises");
    const replaced = new X509Certificate(await readFile(edge.layout.certificate)).fingerprint256;
    expect(replaced).not.toBe(before);
    expect(await servedCertificate()).toBe(replaced);
    expect(edge.nginx.child.exitCode).toBeNull();
  });
});
