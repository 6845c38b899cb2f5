import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type FakeGraph, startFakeGraph } from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// POST/GET /v1/messages through the cloud transport to the fake Graph API: what Meta receives, ownership of
// messages, and Idempotency-Key semantics.

let fake: FakeGraph;
let gw: TestGateway;
let token: string;

beforeAll(async () => {
  fake = await startFakeGraph({ accessToken: "test-access-token" });
  gw = await startTestGateway({
    WHATSAPP_TRANSPORT: "cloud",
    GRAPH_API_BASE_URL: fake.baseUrl,
    WHATSAPP_ACCESS_TOKEN: "test-access-token",
    WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
  });
  token = await gw.token(["messages:send", "messages:read"]);
});
afterAll(async () => {
  await gw?.stop();
  await fake?.close();
});
beforeEach(() => {
  fake.requests.length = 0;
});

async function settled(id: string, tokenToUse = token) {
  return eventually(
    async () => {
      const r = await gw.request("GET", `/v1/messages/${id}`, { token: tokenToUse });
      return r.json.status !== "queued" ? r.json : undefined;
    },
    10_000,
    `message ${id} to settle`,
  );
}

describe("messages", () => {
  it("sends a text message the way the Cloud API expects and reports its status", async () => {
    const response = await gw.request("POST", "/v1/messages", {
      token,
      body: { type: "text", to: "+14155550123", text: { body: "Your order shipped" } },
    });
    expect(response.status).toBe(202);
    expect(response.json).toEqual({ id: expect.any(String), status: "queued" });
    expect(response.headers.get("location")).toBe(`/v1/messages/${response.json.id}`);

    const status = await settled(response.json.id);
    expect(status.status).toBe("sent");
    expect(status.provider_message_id).toMatch(/^wamid\./);

    expect(fake.requests).toHaveLength(1);
    const sent = fake.requests[0];
    expect(sent?.path).toBe("/v21.0/106540352242922/messages");
    expect(sent?.headers.authorization).toBe("Bearer test-access-token");
    expect(sent?.body).toEqual({
      messaging_product: "whatsapp",
      recipient_type: "individual",
      to: "14155550123",
      type: "text",
      text: { body: "Your order shipped", preview_url: false },
      biz_opaque_callback_data: response.json.id,
    });
  });

  it("sends a template message", async () => {
    const template = {
      name: "order_update",
      language: "pt_BR",
      components: [{ type: "body", parameters: [{ type: "text", text: "1234" }] }],
    };
    const response = await gw.request("POST", "/v1/messages", {
      token,
      body: { type: "template", to: "+5511987654321", template },
    });
    expect(response.status).toBe(202);
    expect((await settled(response.json.id)).status).toBe("sent");
    expect(fake.requests[0]?.body).toMatchObject({
      to: "5511987654321",
      type: "template",
      template: { name: "order_update", language: { code: "pt_BR" }, components: template.components },
    });
  });

  it("shows a message only to the subject that sent it", async () => {
    const mine = await gw.request("POST", "/v1/messages", {
      token,
      body: { type: "text", to: "+14155550123", text: { body: "private" } },
    });
    await settled(mine.json.id);
    const other = await gw.token(["messages:read"], { sub: "someone-else" });
    const response = await gw.request("GET", `/v1/messages/${mine.json.id}`, { token: other });
    expect(response.status).toBe(404);
    const unknown = await gw.request("GET", "/v1/messages/6f1c4a52-44cf-4b55-a34b-5a1b7a0e3b0c", { token });
    expect(unknown.status).toBe(404);
    expect(response.json).toEqual(unknown.json);
  });
});

describe("Idempotency-Key", () => {
  const body = { type: "text", to: "+14155550123", text: { body: "charge confirmed" } };

  it("answers a retry with the first answer and sends once", async () => {
    const headers = { "idempotency-key": "order-42-confirmation" };
    const first = await gw.request("POST", "/v1/messages", { token, body, headers });
    expect(first.status).toBe(202);
    const again = await gw.request("POST", "/v1/messages", { token, body, headers });
    expect(again.status).toBe(202);
    expect(again.json).toEqual(first.json);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    // Same body with keys in another order is the same request.
    const reordered = await gw.request("POST", "/v1/messages", {
      token,
      headers,
      body: { text: { body: "charge confirmed" }, to: "+14155550123", type: "text" },
    });
    expect(reordered.json).toEqual(first.json);
    await settled(first.json.id);
    await new Promise((r) => setTimeout(r, 200));
    expect(fake.requests).toHaveLength(1);
  });

  it("answers 409 to the same key with another body, and sends nothing for it", async () => {
    const headers = { "idempotency-key": "order-43" };
    const first = await gw.request("POST", "/v1/messages", { token, body, headers });
    await settled(first.json.id);
    const conflict = await gw.request("POST", "/v1/messages", {
      token,
      headers,
      body: { ...body, text: { body: "another text" } },
    });
    expect(conflict.status).toBe(409);
    expect(conflict.json.error.code).toBe("idempotency_conflict");
    await new Promise((r) => setTimeout(r, 200));
    expect(fake.requests).toHaveLength(1);
  });

  it("keeps concurrent retries with one key to one message", async () => {
    const headers = { "idempotency-key": "burst-1" };
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => gw.request("POST", "/v1/messages", { token, body, headers })),
    );
    const ids = new Set(answers.map((a) => a.json.id));
    expect(answers.every((a) => a.status === 202)).toBe(true);
    expect(ids.size).toBe(1);
    await settled([...ids][0] as string);
    await new Promise((r) => setTimeout(r, 200));
    expect(fake.requests).toHaveLength(1);
  });

  it("scopes keys to the token's subject", async () => {
    const headers = { "idempotency-key": "shared-key" };
    const a = await gw.request("POST", "/v1/messages", { token, body, headers });
    const otherToken = await gw.token(["messages:send"], { sub: "tenant-b" });
    const b = await gw.request("POST", "/v1/messages", { token: otherToken, body, headers });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.json.id).not.toBe(a.json.id);
  });
});
