import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeGraph, inboundNotification, signWebhook, startFakeGraph } from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// Automated replies end to end: rules through /v1/replies, inbound messages through Meta's signed webhook,
// replies through the outbox to the fake Graph API. Whether a reply was enqueued is read from the database
// right after the webhook's 200 (replies are enqueued before Meta is acknowledged), so "no reply" is a fact,
// not a wait.

const APP_SECRET = "meta-app-secret-for-replies";
const OWN_DISPLAY_NUMBER = "15550783881"; // the metadata.display_phone_number of inboundNotification
let fake: FakeGraph;
let gw: TestGateway; // cooldown 0: every rule can be exercised with fresh contacts
let cooled: TestGateway; // the default-like cooldown of one hour
let token: string;
let cooledToken: string;
let contactSeq = 0;

const cloudEnv = () => ({
  WHATSAPP_TRANSPORT: "cloud",
  GRAPH_API_BASE_URL: fake.baseUrl,
  WHATSAPP_ACCESS_TOKEN: "t",
  WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
  WHATSAPP_APP_SECRET: APP_SECRET,
});

beforeAll(async () => {
  fake = await startFakeGraph();
  gw = await startTestGateway({ ...cloudEnv(), REPLY_COOLDOWN_SECONDS: "0", REPLY_MAX_RULES: "12" });
  cooled = await startTestGateway({ ...cloudEnv(), REPLY_COOLDOWN_SECONDS: "3600" });
  token = await gw.token(["replies"]);
  cooledToken = await cooled.token(["replies"]);
});
afterAll(async () => {
  await gw?.stop();
  await cooled?.stop();
  await fake?.close();
});

/** A fresh contact per case, so cases never share a cooldown or a match. */
function newContact(): string {
  contactSeq++;
  return `4915100${String(contactSeq).padStart(5, "0")}`;
}

let inboundSeq = 0;
function newInboundId(): string {
  inboundSeq++;
  return `wamid.inbound-${Date.now()}-${inboundSeq}`;
}

async function deliverInbound(
  target: TestGateway,
  message: { from: string; text: string; id?: string; ageSeconds?: number },
): Promise<{ status: number; id: string }> {
  const id = message.id ?? newInboundId();
  const payload = inboundNotification([{ id, from: message.from, text: message.text }]) as {
    entry: Array<{ changes: Array<{ value: { messages: Array<{ timestamp: string }> } }> }>;
  };
  if (message.ageSeconds !== undefined) {
    const item = payload.entry[0]?.changes[0]?.value.messages[0];
    if (item) item.timestamp = String(Math.floor(Date.now() / 1000) - message.ageSeconds);
  }
  const body = JSON.stringify(payload);
  const response = await target.request("POST", "/webhooks/whatsapp", {
    body,
    headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(APP_SECRET, body) },
  });
  return { status: response.status, id };
}

function repliesTo(
  target: TestGateway,
  from: string,
): Array<{ payload: Record<string, unknown>; subject: string }> {
  const db = new Database(target.config.DATABASE_PATH, { readonly: true });
  try {
    const rows = db
      .prepare("SELECT payload, subject, priority FROM messages WHERE recipient = ? ORDER BY created_at")
      .all(`+${from}`) as Array<{ payload: string; subject: string; priority: number }>;
    return rows.map((r) => {
      expect(r.priority).toBe(0); // interactive: ahead of broadcasts
      return { payload: JSON.parse(r.payload) as Record<string, unknown>, subject: r.subject };
    });
  } finally {
    db.close();
  }
}

async function createRule(target: TestGateway, bearer: string, rule: Record<string, unknown>) {
  const response = await target.request("POST", "/v1/replies", { token: bearer, body: rule });
  expect(response.status, response.text).toBe(201);
  return response.json as { id: string };
}

const textReply = (text: string) => ({ type: "text", text });
const replyText = (p: Record<string, unknown>) => (p.text as { body: string } | undefined)?.body;

describe("reply rules API", () => {
  it("creates, lists, reads, updates and deletes a rule, each token sub seeing only its own", async () => {
    const created = await createRule(gw, token, {
      match: "exact",
      pattern: "api-crud-check",
      reply: textReply("crud"),
      priority: 7,
    });
    const read = await gw.request("GET", `/v1/replies/${created.id}`, { token });
    expect(read.json).toMatchObject({
      match: "exact",
      pattern: "api-crud-check",
      priority: 7,
      ignore_case: true,
    });
    const patched = await gw.request("PATCH", `/v1/replies/${created.id}`, { token, body: { priority: 3 } });
    expect(patched.json.priority).toBe(3);

    const other = await gw.token(["replies"], { sub: "another-backend" });
    expect((await gw.request("GET", `/v1/replies/${created.id}`, { token: other })).status).toBe(404);
    expect((await gw.request("GET", "/v1/replies", { token: other })).json.data).toEqual([]);
    expect((await gw.request("DELETE", `/v1/replies/${created.id}`, { token: other })).status).toBe(404);

    expect((await gw.request("DELETE", `/v1/replies/${created.id}`, { token })).status).toBe(204);
    expect((await gw.request("GET", `/v1/replies/${created.id}`, { token })).status).toBe(404);
  });

  it("needs the replies scope", async () => {
    const noScope = await gw.token(["messages:send"]);
    expect((await gw.request("GET", "/v1/replies", { token: noScope })).status).toBe(403);
    expect((await gw.request("GET", "/v1/replies")).status).toBe(401);
  });

  it("refuses a regex RE2 cannot run (422 naming the field), oversized patterns and too many rules", async () => {
    for (const pattern of ["(a)\\1", "(?<=a)b", "((a{100}){100}){100}", "(unclosed"]) {
      const response = await gw.request("POST", "/v1/replies", {
        token,
        body: { match: "regex", pattern, reply: textReply("x") },
      });
      expect(response.status, pattern).toBe(422);
      expect(response.json.error.code).toBe("invalid_regex");
      expect(response.json.error.message).toMatch(/^pattern: /);
    }
    const long = await gw.request("POST", "/v1/replies", {
      token,
      body: { match: "contains", pattern: "x".repeat(513), reply: textReply("x") },
    });
    expect(long.status).toBe(400);
    expect(long.json.error.message).toContain("pattern");

    const crowded = await gw.token(["replies"], { sub: "crowded" });
    for (let i = 0; i < 12; i++)
      await createRule(gw, crowded, {
        match: "exact",
        pattern: `never-${i}`,
        reply: textReply("x"),
        enabled: false,
      });
    const over = await gw.request("POST", "/v1/replies", {
      token: crowded,
      body: { match: "exact", pattern: "one-too-many", reply: textReply("x") },
    });
    expect(over.status).toBe(422);
    expect(over.json.error.code).toBe("too_many_rules");
  });
});

describe("matching", () => {
  it("exact matches the whole text (trimmed, case- and accent-insensitive by default)", async () => {
    await createRule(gw, token, { match: "exact", pattern: "Horário", reply: textReply("exact-hours") });
    const a = newContact();
    await deliverInbound(gw, { from: a, text: "  HORARIO " });
    expect(repliesTo(gw, a).map((r) => replyText(r.payload))).toEqual(["exact-hours"]);
    const b = newContact();
    await deliverInbound(gw, { from: b, text: "horario please" });
    expect(repliesTo(gw, b)).toEqual([]);
  });

  it("contains folds accents and case when asked, and is exact about them when not", async () => {
    await createRule(gw, token, { match: "contains", pattern: "crème brûlée", reply: textReply("dessert") });
    await createRule(gw, token, {
      match: "contains",
      pattern: "Straße",
      ignore_case: false,
      reply: textReply("street-strict"),
    });
    const a = newContact();
    await deliverInbound(gw, { from: a, text: "Do you have CREME BRULEE today?" });
    expect(repliesTo(gw, a).map((r) => replyText(r.payload))).toEqual(["dessert"]);
    const b = newContact();
    await deliverInbound(gw, { from: b, text: "which strasse?" });
    expect(repliesTo(gw, b)).toEqual([]);
    const c = newContact();
    await deliverInbound(gw, { from: c, text: "which Straße?" });
    expect(repliesTo(gw, c).map((r) => replyText(r.payload))).toEqual(["street-strict"]);
  });

  it("regex searches with RE2 syntax", async () => {
    await createRule(gw, token, {
      match: "regex",
      pattern: "^order\\s+#?(\\d{4,8})$",
      reply: textReply("order-status"),
    });
    const a = newContact();
    await deliverInbound(gw, { from: a, text: "ORDER #123456" });
    expect(repliesTo(gw, a).map((r) => replyText(r.payload))).toEqual(["order-status"]);
    const b = newContact();
    await deliverInbound(gw, { from: b, text: "order #12" });
    expect(repliesTo(gw, b)).toEqual([]);
  });

  it("the best priority wins (lower first), across token subs, and the reply is sent by its owner", async () => {
    const other = await gw.token(["replies"], { sub: "support-desk" });
    await createRule(gw, token, {
      match: "contains",
      pattern: "refund",
      priority: 50,
      reply: textReply("refund-50"),
    });
    await createRule(gw, other, {
      match: "contains",
      pattern: "refund",
      priority: 10,
      reply: textReply("refund-10"),
    });
    await createRule(gw, token, {
      match: "contains",
      pattern: "refund",
      priority: 90,
      reply: textReply("refund-90"),
    });
    const a = newContact();
    await deliverInbound(gw, { from: a, text: "I want a refund" });
    const replies = repliesTo(gw, a);
    expect(replies.map((r) => replyText(r.payload))).toEqual(["refund-10"]);
    expect(replies[0]?.subject).toBe("support-desk");
  });

  it("sends a template reply, and the reply reaches the Graph API", async () => {
    await createRule(gw, token, {
      match: "exact",
      pattern: "menu please",
      reply: { type: "template", template: { name: "daily_menu", language: "en_US" } },
    });
    const a = newContact();
    await deliverInbound(gw, { from: a, text: "Menu please" });
    const sent = await eventually(
      async () => fake.accepted().find((b) => b.to === a),
      10_000,
      "the automated reply at the fake Graph API",
    );
    expect(sent).toMatchObject({ type: "template", template: { name: "daily_menu" } });
  });

  it("a catastrophic regex is harmless: the webhook answers, with or without a match", async () => {
    // For a backtracking engine, (a+)+$ against "aaa…a!" takes 2^n steps; RE2 takes linear time.
    await createRule(gw, token, { match: "regex", pattern: "(a+)+$", reply: textReply("redos") });
    const a = newContact();
    const failing = await deliverInbound(gw, { from: a, text: `${"a".repeat(4000)}!` });
    expect(failing.status).toBe(200);
    expect(repliesTo(gw, a)).toEqual([]);
    const b = newContact();
    const matching = await deliverInbound(gw, { from: b, text: "a".repeat(4000) });
    expect(matching.status).toBe(200);
    expect(repliesTo(gw, b).map((r) => replyText(r.payload))).toEqual(["redos"]);
    // A message far beyond the regex input limit is still answered by Meta's webhook.
    const c = newContact();
    expect((await deliverInbound(gw, { from: c, text: `${"a".repeat(60_000)}!` })).status).toBe(200);
  });
});

describe("loop protection", () => {
  it("never answers the gateway's own number", async () => {
    await createRule(gw, token, { match: "contains", pattern: "echo-loop", reply: textReply("echo-loop") });
    await deliverInbound(gw, { from: OWN_DISPLAY_NUMBER, text: "echo-loop" });
    expect(repliesTo(gw, OWN_DISPLAY_NUMBER)).toEqual([]);
    const stranger = newContact();
    await deliverInbound(gw, { from: stranger, text: "echo-loop" });
    expect(repliesTo(gw, stranger)).toHaveLength(1);
  });

  it("answers a redelivered inbound message once", async () => {
    await createRule(gw, token, { match: "contains", pattern: "twice-delivered", reply: textReply("once") });
    const a = newContact();
    const first = await deliverInbound(gw, { from: a, text: "twice-delivered" });
    await deliverInbound(gw, { from: a, text: "twice-delivered", id: first.id });
    expect(repliesTo(gw, a)).toHaveLength(1);
    // With no cooldown on this gateway, a new message is answered again: only the redelivery was refused.
    await deliverInbound(gw, { from: a, text: "twice-delivered" });
    expect(repliesTo(gw, a)).toHaveLength(2);
  });

  it("answers only inside the 24 h window opened by the inbound message", async () => {
    await createRule(gw, token, { match: "contains", pattern: "late-arrival", reply: textReply("late") });
    const a = newContact();
    await deliverInbound(gw, { from: a, text: "late-arrival", ageSeconds: 24 * 3600 + 60 });
    expect(repliesTo(gw, a)).toEqual([]);
    const b = newContact();
    await deliverInbound(gw, { from: b, text: "late-arrival", ageSeconds: 23 * 3600 });
    expect(repliesTo(gw, b)).toHaveLength(1);
  });

  it("answers a contact at most once per cooldown, whatever rule matches", async () => {
    await createRule(cooled, cooledToken, { match: "contains", pattern: "hello", reply: textReply("hi") });
    await createRule(cooled, cooledToken, {
      match: "contains",
      pattern: "price",
      reply: textReply("prices"),
    });
    const a = newContact();
    await deliverInbound(cooled, { from: a, text: "hello" });
    await deliverInbound(cooled, { from: a, text: "hello again" });
    await deliverInbound(cooled, { from: a, text: "price?" });
    expect(repliesTo(cooled, a).map((r) => replyText(r.payload))).toEqual(["hi"]);
    const b = newContact();
    await deliverInbound(cooled, { from: b, text: "price?" });
    expect(repliesTo(cooled, b).map((r) => replyText(r.payload))).toEqual(["prices"]);
  });
});
