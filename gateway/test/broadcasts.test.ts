import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../../scripts/lib/processes.js";
import type { EventSink, GatewayEvent } from "../src/events.js";
import type { GatewayOverrides } from "../src/gateway.js";
import {
  type FakeGraph,
  type FakeGraphOptions,
  graphError,
  type RecordedRequest,
  startFakeGraph,
} from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// Broadcasts end to end: real HTTP into an in-process gateway, the cloud transport against the fake Graph API.
// Rates are judged on the fake's own arrival timestamps, never on the test's duration.

const PHONE_NUMBER_ID = "106540352242922";
const TEMPLATE = { name: "spring_sale", language: "en_US" };

interface Harness {
  gw: TestGateway;
  fake: FakeGraph;
  token: string;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(
  env: Record<string, string> = {},
  fakeOptions: FakeGraphOptions & { statuses?: Array<"sent" | "delivered" | "read"> } = {},
  overrides: GatewayOverrides = {},
): Promise<Harness> {
  const port = await freePort();
  const appSecret = randomBytes(16).toString("hex");
  const { statuses, ...options } = fakeOptions;
  const fake = await startFakeGraph({
    ...options,
    ...(statuses
      ? { statusWebhook: { url: `http://127.0.0.1:${port}/webhooks/whatsapp`, appSecret, statuses } }
      : {}),
  });
  cleanups.push(() => fake.close());
  const gw = await startTestGateway(
    {
      PORT: String(port),
      WHATSAPP_TRANSPORT: "cloud",
      GRAPH_API_BASE_URL: fake.baseUrl,
      WHATSAPP_ACCESS_TOKEN: "broadcast-test-token",
      WHATSAPP_PHONE_NUMBER_ID: PHONE_NUMBER_ID,
      WHATSAPP_APP_SECRET: appSecret,
      BROADCAST_PAIR_INTERVAL_SECONDS: "0",
      LOG_LEVEL: "info",
      ...env,
    },
    overrides,
  );
  cleanups.push(() => gw.stop());
  const token = await gw.token(["broadcasts", "messages:send"]);
  return { gw, fake, token };
}

const phone = (i: number) => `+4477${String(i).padStart(8, "0")}`;
const phones = (n: number, from = 0) => Array.from({ length: n }, (_, i) => phone(from + i));

async function createBroadcast(h: Harness, body: unknown, headers: Record<string, string> = {}) {
  return h.gw.request("POST", "/v1/broadcasts", { token: h.token, body, headers });
}

async function waitForStatus(h: Harness, id: string, status: string, timeoutMs = 30_000) {
  return eventually(
    async () => {
      const r = await h.gw.request("GET", `/v1/broadcasts/${id}`, { token: h.token });
      return r.json?.status === status ? r.json : undefined;
    },
    timeoutMs,
    `broadcast ${status}`,
  );
}

/** Recipients (digits, as sent to Meta) of the accepted template requests, in arrival order. */
const templateRequests = (fake: FakeGraph): RecordedRequest[] =>
  fake.requests.filter((r) => r.wamid && (r.body as { type?: string }).type === "template");

describe("POST /v1/broadcasts", () => {
  it("removes duplicates, reports invalid numbers per item and sends each valid number once", async () => {
    const h = await setup();
    const response = await createBroadcast(h, {
      name: "spring",
      template: { ...TEMPLATE, components: [{ type: "header", parameters: [{ type: "text", text: "Hi" }] }] },
      recipients: [
        phone(1),
        { to: phone(2), parameters: ["Ann", "20%"] },
        "0044 7700",
        phone(1),
        { to: "+1 415 555 0123" },
        phone(3),
      ],
    });
    expect(response.status).toBe(202);
    expect(response.json.total).toBe(3);
    expect(response.json.duplicates).toBe(1);
    expect(response.json.invalid).toEqual([
      { index: 2, to: "0044 7700", reason: expect.any(String) },
      { index: 4, to: "+1 415 555 0123", reason: expect.any(String) },
    ]);
    const done = await waitForStatus(h, response.json.id, "completed");
    expect(done).toMatchObject({ total: 3, sent: 3, failed: 0, queued: 0, invalid: 2, duplicates: 1 });

    // biome-ignore lint/suspicious/noExplicitAny: the test reads Graph API request bodies of any shape
    const sent = templateRequests(h.fake).map((r) => r.body as Record<string, any>);
    expect(sent.map((b) => b.to).sort()).toEqual([phone(1), phone(2), phone(3)].map((p) => p.slice(1)));
    const ann = sent.find((b) => b.to === phone(2).slice(1));
    expect(ann?.template).toEqual({
      name: "spring_sale",
      language: { code: "en_US" },
      components: [
        { type: "header", parameters: [{ type: "text", text: "Hi" }] },
        {
          type: "body",
          parameters: [
            { type: "text", text: "Ann" },
            { type: "text", text: "20%" },
          ],
        },
      ],
    });
  });

  it("refuses malformed requests as a whole, and requests without a valid number", async () => {
    const h = await setup();
    const malformed = [
      { template: TEMPLATE },
      { template: TEMPLATE, recipients: [] },
      { template: TEMPLATE, recipients: [14155550123] },
      { template: TEMPLATE, recipients: [{ phone: phone(1) }] },
      { template: { name: "Bad Name", language: "en_US" }, recipients: [phone(1)] },
      { template: TEMPLATE, recipients: [phone(1)], extra: true },
    ];
    for (const body of malformed) {
      const r = await createBroadcast(h, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.json.error.code).toBe("invalid_request");
    }
    const none = await createBroadcast(h, { template: TEMPLATE, recipients: ["123", "+0"] });
    expect(none.status).toBe(422);
    expect(none.json.invalid).toHaveLength(2);
    const tooMany = await createBroadcast(h, { template: TEMPLATE, recipients: phones(100_001) });
    expect(tooMany.status).toBe(400);
    expect(h.fake.requests).toHaveLength(0);
  });

  it("needs the broadcasts scope and shows a broadcast only to the token's subject", async () => {
    const h = await setup();
    const noScope = await h.gw.token(["messages:send"]);
    const refused = await h.gw.request("POST", "/v1/broadcasts", {
      token: noScope,
      body: { template: TEMPLATE, recipients: [phone(1)] },
    });
    expect(refused.status).toBe(403);
    const created = await createBroadcast(h, { template: TEMPLATE, recipients: [phone(1)] });
    expect(created.status).toBe(202);
    const other = await h.gw.token(["broadcasts"], { sub: "someone-else" });
    for (const [method, path] of [
      ["GET", `/v1/broadcasts/${created.json.id}`],
      ["POST", `/v1/broadcasts/${created.json.id}/cancel`],
    ] as const) {
      const r = await h.gw.request(method, path, { token: other });
      expect(r.status).toBe(404);
    }
    const mine = await h.gw.request("GET", `/v1/broadcasts/${created.json.id}`, { token: h.token });
    expect(mine.status).toBe(200);
  });

  it("replays an Idempotency-Key instead of creating a second broadcast", async () => {
    const h = await setup();
    const body = { template: TEMPLATE, recipients: phones(3) };
    const first = await createBroadcast(h, body, { "idempotency-key": "campaign-7" });
    const again = await createBroadcast(h, body, { "idempotency-key": "campaign-7" });
    expect(again.status).toBe(202);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(again.json.id).toBe(first.json.id);
    const conflict = await createBroadcast(
      h,
      { template: TEMPLATE, recipients: phones(2) },
      { "idempotency-key": "campaign-7" },
    );
    expect(conflict.status).toBe(409);
    await waitForStatus(h, first.json.id, "completed");
    expect(templateRequests(h.fake)).toHaveLength(3);
  });

  it("accepts 100,000 recipients in one request", async () => {
    // Rate 1: the test is about accepting and storing, not sending.
    const h = await setup({ BROADCAST_RATE_PER_SECOND: "1" });
    const body = JSON.stringify({ template: TEMPLATE, recipients: phones(100_000) });
    const started = performance.now();
    const r = await createBroadcast(h, body);
    const ms = performance.now() - started;
    console.log(`100,000 recipients (${(body.length / 1e6).toFixed(1)} MB): 202 after ${ms.toFixed(0)} ms`);
    expect(r.status).toBe(202);
    expect(r.json.total).toBe(100_000);
    const view = await h.gw.request("GET", `/v1/broadcasts/${r.json.id}`, { token: h.token });
    expect(view.json).toMatchObject({ total: 100_000, failed: 0 });
    expect(view.json.queued + view.json.sent).toBe(100_000);
  });
});

describe("broadcast sending", () => {
  it("keeps to the configured rate, measured at the fake Graph API", async () => {
    const RATE = 40;
    const COUNT = 160;
    const h = await setup({ BROADCAST_RATE_PER_SECOND: String(RATE) });
    const r = await createBroadcast(h, { template: TEMPLATE, recipients: phones(COUNT) });
    await waitForStatus(h, r.json.id, "completed");
    const at = templateRequests(h.fake).map((q) => q.at);
    expect(at).toHaveLength(COUNT);
    const achieved = (COUNT - 1) / (((at.at(-1) as number) - (at[0] as number)) / 1000);
    expect(achieved).toBeGreaterThan(RATE * 0.9);
    expect(achieved).toBeLessThan(RATE * 1.1);
    // No one-second window holds much more than a second's worth (plus the bucket's small burst).
    for (const start of at) {
      const inWindow = at.filter((t) => t >= start && t < start + 1000).length;
      expect(inWindow).toBeLessThanOrEqual(Math.ceil(RATE * 1.15) + 1);
    }
  });

  it("keeps the pair interval per recipient across broadcasts and after a single message", async () => {
    const h = await setup({ BROADCAST_RATE_PER_SECOND: "100", BROADCAST_PAIR_INTERVAL_SECONDS: "2" });
    const single = await h.gw.request("POST", "/v1/messages", {
      token: h.token,
      body: { type: "text", to: phone(0), text: { body: "hello" } },
    });
    expect(single.status).toBe(202);
    await h.fake.waitForRequests(1);
    const a = await createBroadcast(h, { template: TEMPLATE, recipients: phones(4) });
    const b = await createBroadcast(h, { template: TEMPLATE, recipients: phones(4) });
    await waitForStatus(h, a.json.id, "completed");
    await waitForStatus(h, b.json.id, "completed");
    const byRecipient = new Map<string, number[]>();
    for (const q of h.fake.requests.filter((q) => q.wamid)) {
      const to = String((q.body as { to: string }).to);
      byRecipient.set(to, [...(byRecipient.get(to) ?? []), q.at]);
    }
    expect(byRecipient.get(phone(0).slice(1))).toHaveLength(3);
    for (const [to, times] of byRecipient) {
      expect(times, to).toHaveLength(to === phone(0).slice(1) ? 3 : 2);
      for (let i = 1; i < times.length; i++) {
        expect((times[i] as number) - (times[i - 1] as number), to).toBeGreaterThanOrEqual(1900);
      }
    }
    // Recipients without an earlier message were not held back by the others' interval.
    const firsts = [...byRecipient.values()].map((t) => t[0] as number);
    expect(Math.max(...firsts) - Math.min(...firsts)).toBeLessThan(1900);
  });

  it("slows down on error 130429 and recovers by itself", async () => {
    const RATE = 100;
    const h = await setup({ BROADCAST_RATE_PER_SECOND: String(RATE) });
    h.fake.script(...Array.from({ length: 3 }, () => graphError(130429, 400)));
    const r = await createBroadcast(h, { template: TEMPLATE, recipients: phones(150) });
    await eventually(
      async () => (h.gw.gateway.broadcasts.currentRate <= RATE / 2 ? true : undefined),
      10_000,
      "the rate to drop",
    );
    expect(h.gw.logs()).toContain("throughput limit reached, slowing down");
    const done = await waitForStatus(h, r.json.id, "completed");
    expect(done).toMatchObject({ sent: 150, failed: 0 });
    // The refused ones were retried: every recipient got exactly one accepted message.
    const accepted = templateRequests(h.fake).map((q) => (q.body as { to: string }).to);
    expect(new Set(accepted).size).toBe(150);
    expect(accepted).toHaveLength(150);
    await eventually(
      async () => (h.gw.gateway.broadcasts.currentRate === RATE ? true : undefined),
      20_000,
      "the rate to recover",
    );
  });

  it("cancel stops what is not yet sent", async () => {
    const h = await setup({ BROADCAST_RATE_PER_SECOND: "10" });
    const r = await createBroadcast(h, { template: TEMPLATE, recipients: phones(200) });
    await h.fake.waitForRequests(5);
    const cancelled = await h.gw.request("POST", `/v1/broadcasts/${r.json.id}/cancel`, { token: h.token });
    expect(cancelled.status).toBe(200);
    expect(cancelled.json.status).toBe("cancelled");
    const atCancel = h.fake.requests.length;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // Only sends already in flight at the cancel may still arrive.
    expect(h.fake.requests.length).toBeLessThanOrEqual(atCancel + 2);
    const view = await eventually(async () => {
      const v = await h.gw.request("GET", `/v1/broadcasts/${r.json.id}`, { token: h.token });
      return v.json.queued === 0 ? v.json : undefined;
    });
    expect(view.status).toBe("cancelled");
    expect(view.sent).toBe(templateRequests(h.fake).length);
    expect(view.sent + view.failed + view.not_sent).toBe(200);
    expect(view.not_sent).toBeGreaterThan(150);
    const again = await h.gw.request("POST", `/v1/broadcasts/${r.json.id}/cancel`, { token: h.token });
    expect(again.status).toBe(200);
  });

  it("does not resend a send that was in flight at the cancel and came back for a retry", async () => {
    const h = await setup({ BROADCAST_RATE_PER_SECOND: "5" }, { latencyMs: 400 });
    h.fake.script(graphError(130429, 400));
    const r = await createBroadcast(h, { template: TEMPLATE, recipients: phones(50) });
    await h.fake.waitForRequests(1);
    const cancelled = await h.gw.request("POST", `/v1/broadcasts/${r.json.id}/cancel`, { token: h.token });
    expect(cancelled.json.status).toBe("cancelled");
    const refusedTo = (h.fake.requests[0]?.body as { to?: string } | undefined)?.to;
    expect(refusedTo).toBeDefined();
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(h.fake.requests.filter((q) => (q.body as { to: string }).to === refusedTo)).toHaveLength(1);
    const view = await h.gw.request("GET", `/v1/broadcasts/${r.json.id}`, { token: h.token });
    expect(view.json.queued).toBe(0);
    expect(view.json.sent + view.json.failed + view.json.not_sent).toBe(50);
  });

  it("lets single messages overtake a running broadcast", async () => {
    const CONCURRENCY = 4;
    const h = await setup(
      { BROADCAST_RATE_PER_SECOND: "1000", OUTBOX_CONCURRENCY: String(CONCURRENCY) },
      { latencyMs: 100 },
    );
    const r = await createBroadcast(h, { template: TEMPLATE, recipients: phones(400) });
    await h.fake.waitForRequests(20);
    const before = h.fake.requests.length;
    const single = await h.gw.request("POST", "/v1/messages", {
      token: h.token,
      body: { type: "text", to: "+14155550199", text: { body: "your order shipped" } },
    });
    expect(single.status).toBe(202);
    await eventually(async () =>
      h.fake.requests.some((q) => (q.body as { type?: string }).type === "text") ? true : undefined,
    );
    const position = h.fake.requests.findIndex((q) => (q.body as { type?: string }).type === "text");
    // It waited for a free slot at most, not for the broadcast's queued rows.
    expect(position).toBeLessThanOrEqual(before + CONCURRENCY + 1);
    const view = await h.gw.request("GET", `/v1/broadcasts/${r.json.id}`, { token: h.token });
    expect(view.json.queued).toBeGreaterThan(100);
  });

  it("counts delivered and read from Meta's status webhooks and publishes broadcast.completed", async () => {
    const events: GatewayEvent[] = [];
    const sink: EventSink = { publish: async (event) => void events.push(event) };
    const h = await setup(
      { BROADCAST_RATE_PER_SECOND: "200" },
      { statuses: ["sent", "delivered", "read"] },
      { events: sink },
    );
    const r = await createBroadcast(h, { name: "news", template: TEMPLATE, recipients: phones(20) });
    await waitForStatus(h, r.json.id, "completed");
    const view = await eventually(async () => {
      const v = await h.gw.request("GET", `/v1/broadcasts/${r.json.id}`, { token: h.token });
      return v.json.read === 20 ? v.json : undefined;
    });
    expect(view).toMatchObject({ total: 20, sent: 20, delivered: 20, read: 20, failed: 0, queued: 0 });
    const completed = events.filter((e) => e.type === "broadcast.completed");
    expect(completed).toHaveLength(1);
    expect(completed[0]).toMatchObject({
      subject: "tester",
      data: { id: r.json.id, name: "news", total: 20 },
    });
  });
});
