import { readFileSync } from "node:fs";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GatewayEvent } from "../src/events.js";
import { openSqliteStore } from "../src/store/sqlite.js";
import {
  type FakeGraph,
  inboundNotification,
  signWebhook,
  startFakeGraph,
  statusNotification,
} from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// The numbers registry (scope admin) and `from` on every send: several numbers on one gateway, each sending with
// its own credentials, Meta's webhooks routed by phone number id, replies from the number that received.

const APP_SECRET = "meta-app-secret-for-numbers";
const DEFAULT_ID = "106540352242922";
const SUPPORT_ID = "200000000000001";
const SUPPORT_TOKEN = "EAAG-support-access-token-0123456789";
let fake: FakeGraph;
let gw: TestGateway;
let admin: string;
let sender: string;
const published: GatewayEvent[] = [];

beforeAll(async () => {
  fake = await startFakeGraph();
  gw = await startTestGateway(
    {
      WHATSAPP_TRANSPORT: "cloud",
      GRAPH_API_BASE_URL: fake.baseUrl,
      WHATSAPP_ACCESS_TOKEN: "default-access-token-0000",
      WHATSAPP_PHONE_NUMBER_ID: DEFAULT_ID,
      WHATSAPP_APP_SECRET: APP_SECRET,
    },
    { events: { publish: async (event) => void published.push(event) } },
  );
  admin = await gw.token(["admin"]);
  sender = await gw.token(["messages:send", "messages:read", "otp", "broadcasts"]);
});
afterAll(async () => {
  await gw?.stop();
  await fake?.close();
});

function db() {
  return new Database(gw.config.DATABASE_PATH, { readonly: true });
}
function count(sql: string, ...args: unknown[]): number {
  const d = db();
  try {
    return d
      .prepare(sql)
      .pluck()
      .get(...args) as number;
  } finally {
    d.close();
  }
}
const createNumber = (body: unknown) => gw.request("POST", "/v1/numbers", { token: admin, body });
const send = (body: unknown) => gw.request("POST", "/v1/messages", { token: sender, body });
const text = (extra: Record<string, unknown> = {}) => ({
  type: "text",
  to: "+14155550123",
  text: { body: "hello" },
  ...extra,
});

let support: { id: string };
let web: { id: string };

describe("the numbers registry", () => {
  it("registers a cloud number: 201 with its view, the access token sealed and never returned", async () => {
    const res = await createNumber({
      name: "support",
      transport: "cloud",
      cloud: { phone_number_id: SUPPORT_ID, access_token: SUPPORT_TOKEN, waba_id: "300000000000001" },
    });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({
      name: "support",
      transport: "cloud",
      status: "active",
      default: false,
      cloud: { phone_number_id: SUPPORT_ID, waba_id: "300000000000001", access_token_set: true },
    });
    expect(res.json.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(res.headers.get("location")).toBe(`/v1/numbers/${res.json.id}`);
    expect(res.text).not.toContain(SUPPORT_TOKEN);
    support = res.json;
  });

  it("registers a web number, unlinked until an admin links it", async () => {
    const res = await createNumber({ name: "sales", transport: "web" });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ name: "sales", transport: "web", status: "unlinked", cloud: null });
    web = res.json;
  });

  it("lists the default number first, then the registry; GET by id; the default by its id", async () => {
    const list = await gw.request("GET", "/v1/numbers", { token: admin });
    expect(list.status).toBe(200);
    expect(list.json.numbers.map((n: { id: string }) => n.id)).toEqual(["default", support.id, web.id]);
    expect(list.json.numbers[0]).toMatchObject({
      default: true,
      transport: "cloud",
      cloud: { phone_number_id: DEFAULT_ID },
    });
    expect(list.text).not.toContain(SUPPORT_TOKEN);
    expect(list.text).not.toContain("default-access-token-0000");
    const one = await gw.request("GET", `/v1/numbers/${support.id}`, { token: admin });
    expect(one.json).toMatchObject({ id: support.id, name: "support" });
    expect((await gw.request("GET", "/v1/numbers/default", { token: admin })).json.default).toBe(true);
  });

  it("is admin-only: another scope gets 403, no token 401", async () => {
    expect((await gw.request("GET", "/v1/numbers", { token: sender })).status).toBe(403);
    expect((await gw.request("POST", "/v1/numbers", { body: { name: "x", transport: "web" } })).status).toBe(
      401,
    );
  });

  it.each([
    [{ name: "x", transport: "telegram" }, 400, "transport"],
    [{ name: "x" }, 400, "transport"],
    [{ name: "x", transport: "cloud" }, 400, "cloud"],
    [
      { name: "x", transport: "cloud", cloud: { phone_number_id: "1", access_token: "short" } },
      400,
      "access_token",
    ],
    [{ name: "x", transport: "web", cloud: {} }, 400, "cloud"],
    [{ name: "sales", transport: "web" }, 409, "name"],
    [
      { name: "y", transport: "cloud", cloud: { phone_number_id: SUPPORT_ID, access_token: SUPPORT_TOKEN } },
      409,
      "phone_number_id",
    ],
  ])("refuses %j with a JSON %i naming %s", async (body, status, field) => {
    const res = await createNumber(body);
    expect(res.status).toBe(status);
    expect(res.json.error.message).toContain(field);
    expect(res.text).not.toContain(SUPPORT_TOKEN);
  });

  it("PATCH changes a number; cloud credentials only on a cloud number; the default number is read-only", async () => {
    const renamed = await gw.request("PATCH", `/v1/numbers/${web.id}`, {
      token: admin,
      body: { name: "sales-eu" },
    });
    expect(renamed.status).toBe(200);
    expect(renamed.json.name).toBe("sales-eu");
    const wrong = await gw.request("PATCH", `/v1/numbers/${web.id}`, {
      token: admin,
      body: { cloud: { access_token: SUPPORT_TOKEN } },
    });
    expect(wrong.status).toBe(422);
    expect(wrong.json.error.message).toMatch(/^cloud:/);
    const readOnly = await gw.request("PATCH", "/v1/numbers/default", { token: admin, body: { name: "z" } });
    expect(readOnly.status).toBe(422);
    expect(
      (await gw.request("PATCH", `/v1/numbers/${web.id}`, { token: admin, body: { colour: "red" } })).status,
    ).toBe(400);
  });

  it("keeps the access token only sealed: not in the database file, its WAL or the logs", async () => {
    await gw.gateway.store.ping();
    for (const file of [gw.config.DATABASE_PATH, `${gw.config.DATABASE_PATH}-wal`]) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(file);
      } catch {
        continue;
      }
      expect(bytes.includes(Buffer.from(SUPPORT_TOKEN))).toBe(false);
    }
    expect(gw.logs()).not.toContain(SUPPORT_TOKEN);
    expect(gw.logs()).toContain("audit: number created");
  });
});

describe("from on every send", () => {
  it("sends from the default number without from, and from a registered number with its own id and token", async () => {
    const before = fake.requests.length;
    const plain = await send(text());
    const fromDefault = await send(text({ from: "default" }));
    const fromSupport = await send(text({ from: support.id }));
    for (const res of [plain, fromDefault, fromSupport]) expect(res.status).toBe(202);
    await fake.waitForRequests(before + 3);
    const paths = fake.requests.slice(before).map((r) => `${r.path} ${r.headers.authorization}`);
    expect(
      paths.filter((p) => p === `/v21.0/${DEFAULT_ID}/messages Bearer default-access-token-0000`),
    ).toHaveLength(2);
    expect(paths).toContain(`/v21.0/${SUPPORT_ID}/messages Bearer ${SUPPORT_TOKEN}`);
    const viewed = await gw.request("GET", `/v1/messages/${fromSupport.json.id}`, { token: sender });
    expect(viewed.json.from).toBe(support.id);
  });

  it("refuses an unknown number and a web number that is not linked, naming from, before anything is queued", async () => {
    const queued = count("SELECT COUNT(*) FROM messages");
    const unknown = await send(text({ from: "0190a0b0-0000-7000-8000-000000000000" }));
    expect(unknown.status).toBe(422);
    expect(unknown.json.error).toMatchObject({ code: "unknown_number" });
    expect(unknown.json.error.message).toMatch(/^from:/);
    const unlinked = await send(text({ from: web.id }));
    expect(unlinked.status).toBe(422);
    expect(unlinked.json.error.code).toBe("number_unlinked");
    expect(unlinked.json.error.message).toMatch(/^from:/);
    const otp = await gw.request("POST", "/v1/otp", {
      token: sender,
      body: { to: "+14155550199", from: web.id },
    });
    expect(otp.status).toBe(422);
    expect(otp.json.error.message).toMatch(/^from:/);
    const broadcast = await gw.request("POST", "/v1/broadcasts", {
      token: sender,
      body: { from: "nope", template: { name: "t", language: "en_US" }, recipients: ["+14155550123"] },
    });
    expect(broadcast.status).toBe(422);
    expect(broadcast.json.error.message).toMatch(/^from:/);
    expect((await send(text({ from: "bad id!" }))).json.error.message).toContain("from");
    expect(count("SELECT COUNT(*) FROM messages")).toBe(queued);
    expect(count("SELECT COUNT(*) FROM broadcasts")).toBe(0);
  });

  it("a linked web number takes text but refuses templates with template_needs_cloud; OTPs go as plain text", async () => {
    await gw.gateway.store.numbers.setNumberStatus(
      web.id,
      { status: "connected", connectedAt: Date.now() },
      Date.now(),
    );
    const template = await send({
      type: "template",
      from: web.id,
      to: "+14155550123",
      template: { name: "order_update", language: "en_US" },
    });
    expect(template.status).toBe(422);
    expect(template.json.error.code).toBe("template_needs_cloud");
    const accepted = await send(text({ from: web.id }));
    expect(accepted.status).toBe(202);
    const otp = await gw.request("POST", "/v1/otp", {
      token: sender,
      body: { to: "+14155550177", from: web.id },
    });
    expect(otp.status).toBe(202);
    const row = db();
    try {
      const stored = row
        .prepare("SELECT kind, payload, number_id FROM messages WHERE id = ?")
        .get(otp.json.message_id) as {
        kind: string;
        payload: string;
        number_id: string;
      };
      expect(stored.number_id).toBe(web.id);
      expect(JSON.parse(stored.payload)).toMatchObject({
        type: "text",
        text: { body: "{{secret}} is your verification code." },
      });
    } finally {
      row.close();
    }
  });

  it("OTP and broadcasts leave from the number named", async () => {
    const before = fake.requests.length;
    const otp = await gw.request("POST", "/v1/otp", {
      token: sender,
      body: { to: "+14155550188", from: support.id },
    });
    expect(otp.status).toBe(202);
    const broadcast = await gw.request("POST", "/v1/broadcasts", {
      token: sender,
      body: {
        from: support.id,
        template: { name: "promo", language: "en_US" },
        recipients: ["+14155550001", "+14155550002"],
      },
    });
    expect(broadcast.status).toBe(202);
    await fake.waitForRequests(before + 3);
    const sent = fake.requests.slice(before);
    expect(sent.every((r) => r.path === `/v21.0/${SUPPORT_ID}/messages`)).toBe(true);
    const view = await gw.request("GET", `/v1/broadcasts/${broadcast.json.id}`, { token: sender });
    expect(view.json.from).toBe(support.id);
  });

  it("sees a number another process registered at the next request (no restart, no stale cache)", async () => {
    const other = openSqliteStore(gw.config.DATABASE_PATH);
    try {
      const now = Date.now();
      await other.numbers.createNumber({
        id: "0190a0b0-0000-7000-8000-0000000000aa",
        name: "elsewhere",
        transport: "web",
        status: "connected",
        createdAt: now,
      });
      expect((await send(text({ from: "0190a0b0-0000-7000-8000-0000000000aa" }))).status).toBe(202);
      // Removed by the other process: refused at the next request. (Not a status change: this gateway's web
      // numbers manager owns a web number's status and may write its own over another process's.)
      await other.numbers.deleteNumber(
        "0190a0b0-0000-7000-8000-0000000000aa",
        { code: "number_deleted", message: "deleted" },
        now,
      );
      expect((await send(text({ from: "0190a0b0-0000-7000-8000-0000000000aa" }))).json.error.code).toBe(
        "unknown_number",
      );
    } finally {
      await other.close();
    }
  });
});

describe("Meta's webhooks, routed by metadata.phone_number_id", () => {
  function notificationTo(phoneNumberId: string, id: string, body: string) {
    const payload = inboundNotification([{ id, from: "14155550123", text: body }]) as {
      entry: Array<{ changes: Array<{ value: { metadata: { phone_number_id: string } } }> }>;
    };
    const change = payload.entry[0]?.changes[0];
    if (change) change.value.metadata.phone_number_id = phoneNumberId;
    return payload;
  }
  async function deliver(payload: unknown) {
    const body = JSON.stringify(payload);
    return gw.request("POST", "/webhooks/whatsapp", {
      body,
      headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(APP_SECRET, body) },
    });
  }

  it("stores an inbound message with the number that received it, and replies from that number", async () => {
    const replies = await gw.token(["replies"]);
    const rule = await gw.request("POST", "/v1/replies", {
      token: replies,
      body: { match: "exact", pattern: "hours?", reply: { type: "text", text: "9 to 5" } },
    });
    expect(rule.status).toBe(201);
    const before = fake.requests.length;
    expect((await deliver(notificationTo(SUPPORT_ID, "wamid.routed-1", "hours?"))).status).toBe(200);
    expect(
      count(
        "SELECT COUNT(*) FROM inbound_messages WHERE id = 'wamid.routed-1' AND number_id = ?",
        support.id,
      ),
    ).toBe(1);
    await fake.waitForRequests(before + 1);
    const reply = fake.requests.slice(before).find((r) => (r.body as { to?: string }).to === "14155550123");
    expect(reply?.path).toBe(`/v21.0/${SUPPORT_ID}/messages`);
    expect(count("SELECT COUNT(*) FROM inbound_messages WHERE processed_at IS NULL")).toBe(0);
    const received = published.find((e) => e.dedupeKey === "message.received:wamid.routed-1");
    expect(received?.data.number_id).toBe(support.id);
    // The reply's status, posted by Meta for the support number, names the number in its event.
    const replyRow = await eventually(async () => {
      const d = db();
      try {
        return d
          .prepare(
            "SELECT id, provider_message_id FROM messages WHERE number_id = ? AND status = 'sent' AND recipient = '+14155550123' ORDER BY created_at DESC",
          )
          .get(support.id) as { id: string; provider_message_id: string } | undefined;
      } finally {
        d.close();
      }
    });
    const status = statusNotification([{ id: replyRow.provider_message_id, status: "delivered" }]) as {
      entry: Array<{ changes: Array<{ value: { metadata: { phone_number_id: string } } }> }>;
    };
    const statusChange = status.entry[0]?.changes[0];
    if (statusChange) statusChange.value.metadata.phone_number_id = SUPPORT_ID;
    expect((await deliver(status)).status).toBe(200);
    const statusEvent = published.find(
      (e) =>
        e.type === "message.status" && e.data.message_id === replyRow.id && e.data.status === "delivered",
    );
    expect(statusEvent?.data.number_id).toBe(support.id);
  });

  it("stores and ignores a notification for an unknown phone number id, answering 200", async () => {
    const res = await deliver(notificationTo("999999999999999", "wamid.unknown-1", "hi"));
    expect(res.status).toBe(200);
    expect(count("SELECT COUNT(*) FROM inbound_messages WHERE id = 'wamid.unknown-1'")).toBe(0);
    expect(count("SELECT COUNT(*) FROM unrouted_webhooks WHERE phone_number_id = '999999999999999'")).toBe(1);
  });
});

describe("deleting a number", () => {
  it("fails its queued messages with number_deleted, and later sends from it are refused", async () => {
    const res = await gw.request("DELETE", `/v1/numbers/${support.id}`, { token: admin });
    expect(res.status).toBe(204);
    expect((await gw.request("GET", `/v1/numbers/${support.id}`, { token: admin })).status).toBe(404);
    const refused = await send(text({ from: support.id }));
    expect(refused.status).toBe(422);
    expect(refused.json.error.message).toMatch(/^from:/);
    expect((await gw.request("DELETE", "/v1/numbers/default", { token: admin })).status).toBe(422);
  });
});
