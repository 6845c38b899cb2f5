import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type FakeGraph,
  inboundNotification,
  signWebhook,
  startFakeGraph,
  statusNotification,
} from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";
import { startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.js";

// Outbound webhooks end to end: subscriptions through /v1/webhooks, events produced by Meta's webhook (inbound
// and statuses) and OTP verification, delivered over real HTTP to a receiver on 127.0.0.1 (allowed by
// WEBHOOK_ALLOWED_HOSTS), with small backoff settings so retries and the retry budget play out quickly.

const APP_SECRET = "meta-app-secret-for-webhooks";
let fake: FakeGraph;
let gw: TestGateway;
let token: string;
const receivers: WebhookReceiver[] = [];

beforeAll(async () => {
  fake = await startFakeGraph();
  gw = await startTestGateway({
    WHATSAPP_TRANSPORT: "cloud",
    GRAPH_API_BASE_URL: fake.baseUrl,
    WHATSAPP_ACCESS_TOKEN: "t",
    WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
    WHATSAPP_APP_SECRET: APP_SECRET,
    WEBHOOK_ALLOW_HTTP: "true",
    WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
    WEBHOOK_BACKOFF_BASE_MS: "20",
    WEBHOOK_BACKOFF_MAX_MS: "80",
    WEBHOOK_MAX_ATTEMPTS: "4",
    WEBHOOK_POLL_INTERVAL_MS: "20",
    WEBHOOK_TIMEOUT_MS: "1000",
  });
  token = await gw.token(["webhooks", "messages:send", "otp"]);
});
afterAll(async () => {
  await gw?.stop();
  await fake?.close();
  for (const r of receivers) await r.close();
});

async function newReceiver(): Promise<WebhookReceiver> {
  const r = await startWebhookReceiver();
  receivers.push(r);
  return r;
}

async function subscribe(
  url: string,
  events: string[],
  bearer = token,
): Promise<{ id: string; secret: string }> {
  const response = await gw.request("POST", "/v1/webhooks", { token: bearer, body: { url, events } });
  expect(response.status, response.text).toBe(201);
  return response.json as { id: string; secret: string };
}

async function postMeta(payload: unknown): Promise<number> {
  const body = JSON.stringify(payload);
  const response = await gw.request("POST", "/webhooks/whatsapp", {
    body,
    headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(APP_SECRET, body) },
  });
  return response.status;
}

let seq = 0;
const uniqueId = (prefix: string) => `${prefix}-${Date.now()}-${++seq}`;

/** The receiver's side, written here from the documented scheme only (no gateway code). */
function verifySignature(
  secret: string,
  header: string | undefined,
  rawBody: string,
  nowSeconds: number,
): boolean {
  const parts = Object.fromEntries((header ?? "").split(",").map((p) => p.split("=", 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > 300 || !/^[0-9a-f]{64}$/.test(parts.v1 ?? ""))
    return false;
  const expected = createHmac("sha256", secret).update(`${parts.t}.${rawBody}`).digest();
  return timingSafeEqual(expected, Buffer.from(parts.v1 as string, "hex"));
}

async function deliveries(subscriptionId: string, status?: string) {
  const response = await gw.request(
    "GET",
    `/v1/webhooks/${subscriptionId}/deliveries${status ? `?status=${status}` : ""}`,
    { token },
  );
  expect(response.status).toBe(200);
  return response.json.data as Array<{
    id: string;
    event_id: string;
    status: string;
    attempts: number;
    last_status_code: number | null;
    last_error: string | null;
  }>;
}

describe("subscriptions", () => {
  it("answers the secret once; list and get never show it, and the database holds it sealed", async () => {
    const r = await newReceiver();
    const created = await subscribe(r.url, ["message.received", "otp.verified"]);
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    const got = await gw.request("GET", `/v1/webhooks/${created.id}`, { token });
    expect(got.json).toMatchObject({
      id: created.id,
      url: r.url,
      events: ["message.received", "otp.verified"],
    });
    const list = await gw.request("GET", "/v1/webhooks", { token });
    expect(list.json.data.map((s: { id: string }) => s.id)).toContain(created.id);
    expect(got.text).not.toContain(created.secret);
    expect(list.text).not.toContain(created.secret);
    const db = new Database(gw.config.DATABASE_PATH, { readonly: true });
    try {
      const sealed = db
        .prepare("SELECT secret FROM webhook_subscriptions WHERE id = ?")
        .pluck()
        .get(created.id) as Buffer;
      expect(sealed.includes(Buffer.from(created.secret))).toBe(false);
      expect(sealed.includes(Buffer.from(created.secret.slice(6)))).toBe(false);
    } finally {
      db.close();
    }
    const other = await gw.token(["webhooks"], { sub: "someone-else" });
    expect((await gw.request("GET", `/v1/webhooks/${created.id}`, { token: other })).status).toBe(404);
    expect((await gw.request("DELETE", `/v1/webhooks/${created.id}`, { token: other })).status).toBe(404);
    expect((await gw.request("DELETE", `/v1/webhooks/${created.id}`, { token })).status).toBe(204);
  });

  it("refuses unknown or repeated events and needs the webhooks scope", async () => {
    const r = await newReceiver();
    const bad = await gw.request("POST", "/v1/webhooks", {
      token,
      body: { url: r.url, events: ["message.sent"] },
    });
    expect(bad.status).toBe(400);
    const repeated = await gw.request("POST", "/v1/webhooks", {
      token,
      body: { url: r.url, events: ["otp.verified", "otp.verified"] },
    });
    expect(repeated.status).toBe(400);
    const noScope = await gw.token(["messages:send"]);
    expect((await gw.request("GET", "/v1/webhooks", { token: noScope })).status).toBe(403);
  });
});

describe("deliveries", () => {
  it("delivers message.received signed with the subscription's secret, once per inbound id", async () => {
    const r = await newReceiver();
    const sub = await subscribe(r.url, ["message.received"]);
    const inboundId = uniqueId("wamid.in");
    const payload = inboundNotification([{ id: inboundId, from: "14155550100", text: "hello hooks" }]);
    expect(await postMeta(payload)).toBe(200);
    expect(await postMeta(payload)).toBe(200); // Meta re-delivers
    const got = await eventually(
      async () => r.received.find((q) => q.rawBody.includes(inboundId)),
      10_000,
      "the message.received delivery",
    );
    const body = JSON.parse(got.rawBody);
    expect(body).toMatchObject({
      type: "message.received",
      data: { message_id: inboundId, from: "+14155550100", text: "hello hooks", type: "text" },
    });
    expect(got.headers["x-wagate-event-id"]).toBe(body.id);
    expect(got.headers["content-type"]).toBe("application/json");
    const header = got.headers["x-wagate-signature"] as string;
    const now = Math.floor(Date.now() / 1000);
    expect(verifySignature(sub.secret, header, got.rawBody, now)).toBe(true);
    expect(verifySignature(sub.secret, header, got.rawBody.replace("hello", "jello"), now)).toBe(false);
    expect(verifySignature(`${sub.secret}x`, header, got.rawBody, now)).toBe(false);

    // The re-delivered inbound made no second event.
    const done = await eventually(async () => {
      const list = await deliveries(sub.id);
      return list.every((d) => d.status === "delivered") ? list : undefined;
    });
    expect(done).toHaveLength(1);
    expect(r.received.filter((q) => q.rawBody.includes(inboundId))).toHaveLength(1);
    await gw.request("DELETE", `/v1/webhooks/${sub.id}`, { token });
  });

  it("delivers message.status to the owner of the message only", async () => {
    const mine = await newReceiver();
    const theirs = await newReceiver();
    const sub = await subscribe(mine.url, ["message.status"]);
    const otherToken = await gw.token(["webhooks"], { sub: "other-backend" });
    const otherSub = await subscribe(theirs.url, ["message.status"], otherToken);
    const sent = await gw.request("POST", "/v1/messages", {
      token,
      body: { to: "+14155550101", type: "text", text: { body: "status please" } },
    });
    expect(sent.status).toBe(202);
    const wamid = await eventually(async () => {
      const m = await gw.request("GET", `/v1/messages/${sent.json.id}`, {
        token: await gw.token(["messages:read"]),
      });
      return m.json.provider_message_id ?? undefined;
    });
    expect(await postMeta(statusNotification([{ id: wamid, status: "delivered" }]))).toBe(200);
    const got = await eventually(async () => mine.received.find((q) => q.rawBody.includes(wamid)));
    expect(JSON.parse(got.rawBody)).toMatchObject({
      type: "message.status",
      data: { message_id: sent.json.id, provider_message_id: wamid, status: "delivered" },
    });
    await eventually(async () =>
      (await deliveries(sub.id)).every((d) => d.status === "delivered") ? true : undefined,
    );
    expect(theirs.received).toHaveLength(0);
    const otherDeliveries = await gw.request("GET", `/v1/webhooks/${otherSub.id}/deliveries`, {
      token: otherToken,
    });
    expect(otherDeliveries.json.data).toEqual([]);
  });

  it("delivers otp.verified after a successful verification", async () => {
    const r = await newReceiver();
    const sub = await subscribe(r.url, ["otp.verified"]);
    const phone = "+14155550102";
    const issued = await gw.request("POST", "/v1/otp", { token, body: { to: phone } });
    expect(issued.status).toBe(202);
    const request = await eventually(async () => fake.accepted().find((b) => b.to === phone.slice(1)));
    const template = request.template as { components: Array<{ parameters: Array<{ text: string }> }> };
    const code = template.components[0]?.parameters[0]?.text as string;
    const verified = await gw.request("POST", "/v1/otp/verify", { token, body: { to: phone, code } });
    expect(verified.status).toBe(200);
    const got = await eventually(async () => r.received[0]);
    expect(JSON.parse(got.rawBody)).toMatchObject({ type: "otp.verified", data: { to: phone } });
    expect(
      verifySignature(
        sub.secret,
        got.headers["x-wagate-signature"] as string,
        got.rawBody,
        Math.floor(Date.now() / 1000),
      ),
    ).toBe(true);
  });

  it("retries a failing receiver with backoff until it answers 2xx; the event id stays the same", async () => {
    const r = await newReceiver();
    const sub = await subscribe(r.url, ["message.received"]);
    r.failNext(2, 503);
    const inboundId = uniqueId("wamid.retry");
    expect(
      await postMeta(inboundNotification([{ id: inboundId, from: "14155550103", text: "retry me" }])),
    ).toBe(200);
    const [delivery] = await eventually(async () => {
      const list = await deliveries(sub.id, "delivered");
      return list.length > 0 ? list : undefined;
    });
    expect(delivery?.attempts).toBe(3);
    expect(r.received.map((q) => q.statusSent)).toEqual([503, 503, 200]);
    const ids = new Set(r.received.map((q) => q.headers["x-wagate-event-id"]));
    expect(ids.size).toBe(1);
    // Each attempt is signed anew (fresh timestamp) over the same body.
    expect(new Set(r.received.map((q) => q.rawBody)).size).toBe(1);
    await gw.request("DELETE", `/v1/webhooks/${sub.id}`, { token });
  });

  it("gives up on a receiver that does not answer within the timeout, and retries", async () => {
    const r = await newReceiver();
    const sub = await subscribe(r.url, ["message.received"]);
    r.hangNext(1);
    const inboundId = uniqueId("wamid.hang");
    expect(await postMeta(inboundNotification([{ id: inboundId, from: "14155550105", text: "hang" }]))).toBe(
      200,
    );
    const [delivery] = await eventually(async () => {
      const list = await deliveries(sub.id, "delivered");
      return list.length > 0 ? list : undefined;
    });
    expect(delivery?.attempts).toBe(2);
    expect(r.received.map((q) => q.statusSent)).toEqual([0, 200]);
    await gw.request("DELETE", `/v1/webhooks/${sub.id}`, { token });
  });

  it("marks a delivery failed after the retry budget, does not follow redirects, and redelivers on request", async () => {
    const r = await newReceiver();
    const sub = await subscribe(r.url, ["message.received"]);
    r.answerAlways(302);
    const inboundId = uniqueId("wamid.fail");
    expect(
      await postMeta(inboundNotification([{ id: inboundId, from: "14155550104", text: "fail me" }])),
    ).toBe(200);
    const [failed] = await eventually(async () => {
      const list = await deliveries(sub.id, "failed");
      return list.length > 0 ? list : undefined;
    });
    expect(failed).toMatchObject({ attempts: 4, last_status_code: 302 });
    expect(failed?.last_error).toContain("redirect");
    // Four attempts, all to the subscribed path: the Location header was never followed.
    expect(r.received).toHaveLength(4);

    r.answerAlways(undefined);
    const redeliver = await gw.request("POST", `/v1/webhooks/${sub.id}/deliveries/${failed?.id}/redeliver`, {
      token,
    });
    expect(redeliver.status).toBe(202);
    await eventually(async () => ((await deliveries(sub.id, "delivered")).length === 1 ? true : undefined));
    expect(r.received.at(-1)?.statusSent).toBe(200);
    expect(r.received.at(-1)?.headers["x-wagate-event-id"]).toBe(failed?.event_id);

    const other = await gw.token(["webhooks"], { sub: "not-the-owner" });
    const refused = await gw.request("POST", `/v1/webhooks/${sub.id}/deliveries/${failed?.id}/redeliver`, {
      token: other,
    });
    expect(refused.status).toBe(404);
    await gw.request("DELETE", `/v1/webhooks/${sub.id}`, { token });
  });

  it("keeps pending deliveries across a restart: the queue is in the database", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wagate-hooks-restart-"));
    const env = {
      DATABASE_PATH: join(dir, "wagate.db"),
      API_SECRET: randomBytes(32).toString("hex"), // the same key must open the sealed signing secret
      WHATSAPP_APP_SECRET: APP_SECRET,
      WEBHOOK_ALLOW_HTTP: "true",
      WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
      WEBHOOK_BACKOFF_BASE_MS: "50",
      WEBHOOK_BACKOFF_MAX_MS: "100",
      WEBHOOK_POLL_INTERVAL_MS: "20",
    };
    const r = await newReceiver();
    r.answerAlways(503);
    const first = await startTestGateway(env);
    let second: TestGateway | undefined;
    try {
      const bearer = await first.token(["webhooks"]);
      const created = await first.request("POST", "/v1/webhooks", {
        token: bearer,
        body: { url: r.url, events: ["message.received"] },
      });
      const inboundId = uniqueId("wamid.restart");
      const body = JSON.stringify(
        inboundNotification([{ id: inboundId, from: "14155550106", text: "persist" }]),
      );
      const posted = await first.request("POST", "/webhooks/whatsapp", {
        body,
        headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(APP_SECRET, body) },
      });
      expect(posted.status).toBe(200);
      await eventually(async () => (r.received.length > 0 ? true : undefined));
      await first.gateway.stop();
      r.answerAlways(undefined);
      second = await startTestGateway(env);
      const secondGw = second;
      const delivered = await eventually(async () => {
        const list = await secondGw.request(
          "GET",
          `/v1/webhooks/${created.json.id}/deliveries?status=delivered`,
          {
            token: bearer,
          },
        );
        return list.json.data[0] as { attempts: number } | undefined;
      });
      expect(delivered.attempts).toBeGreaterThan(1);
      const last = r.received.at(-1);
      expect(last?.statusSent).toBe(200);
      expect(
        verifySignature(
          created.json.secret,
          last?.headers["x-wagate-signature"] as string,
          last?.rawBody ?? "",
          Math.floor(Date.now() / 1000),
        ),
      ).toBe(true);
    } finally {
      await first.stop();
      await second?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
