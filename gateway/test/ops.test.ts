import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

// Liveness, readiness, metrics (one registry per instance), and what reaches the logs.

let a: TestGateway;
let b: TestGateway;

beforeAll(async () => {
  a = await startTestGateway();
  b = await startTestGateway();
});
afterAll(async () => {
  await a?.stop();
  await b?.stop();
});

describe("operations routes", () => {
  it("answers liveness and readiness", async () => {
    expect((await a.request("GET", "/healthz")).json).toEqual({ status: "ok" });
    expect((await a.request("GET", "/readyz")).json).toEqual({ status: "ready" });
  });

  it("reports not ready when the database is gone", async () => {
    const c = await startTestGateway();
    try {
      await c.gateway.store.close();
      const r = await c.request("GET", "/readyz");
      expect(r.status).toBe(503);
      expect(r.json.error.code).toBe("not_ready");
    } finally {
      await c.stop();
    }
  });

  it("exposes Prometheus metrics per instance", async () => {
    const token = await a.token(["messages:send"]);
    await a.request("POST", "/v1/messages", {
      token,
      body: { type: "text", to: "+14155550123", text: { body: "m" } },
    });
    const metricsA = await a.request("GET", "/metrics");
    const metricsB = await b.request("GET", "/metrics");
    expect(metricsA.headers.get("content-type")).toContain("text/plain");
    expect(metricsA.text).toMatch(/wagate_messages_accepted_total\{kind="text"\} 1/);
    expect(metricsB.text).not.toMatch(/wagate_messages_accepted_total\{kind="text"\} 1/);
    expect(metricsA.text).toContain(
      'wagate_http_requests_total{method="POST",route="/v1/messages",status="202"} 1',
    );
    expect(metricsA.text).toContain("process_cpu_seconds_total");
  });
});

describe("logs", () => {
  it("are JSON and never carry tokens, secrets, codes or whole phone numbers", async () => {
    const token = await a.token(["messages:send", "otp"]);
    const phone = "+14155550177";
    await a.request("POST", "/v1/messages", {
      token,
      body: { type: "text", to: phone, text: { body: "secret text" } },
    });
    await a.request("POST", "/v1/messages", {
      token: `${token}x`,
      body: { type: "text", to: phone, text: { body: "x" } },
    });
    await a.request("POST", "/v1/otp", { token, body: { to: phone } });
    await a.request("POST", "/v1/otp/verify", { token, body: { to: phone, code: "987654" } });
    await a.request("GET", "/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=guess-me&hub.challenge=1");
    await new Promise((r) => setTimeout(r, 300));

    const logs = a.logs();
    const lines = logs.trim().split("\n");
    expect(lines.length).toBeGreaterThan(5);
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow();
    expect(logs).toContain("message accepted");
    expect(logs).toContain("+14*******77");
    expect(logs).not.toContain(token);
    expect(logs).not.toContain(token.split(".")[2]);
    expect(logs).not.toContain(a.config.API_SECRET);
    expect(logs).not.toContain("14155550177");
    expect(logs).not.toContain("987654");
    expect(logs).not.toContain("secret text");
    expect(logs).not.toContain("guess-me");
  });
});
