import { rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway } from "../src/gateway.js";
import { type FakeGraph, inboundNotification, signWebhook, startFakeGraph } from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// Automated replies end to end: rules through /v1/replies, inbound messages through Meta's signed webhook,
// replies through the outbox to the fake Graph API. Matching runs after the webhook's 200; its outcome is
// committed with the reply it enqueues, so once the outcome is recorded (waited for in `deliverInbound`),
// whether a reply was enqueued is read from the database: "no reply" is a fact, not a wait.

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
): Promise<{ status: number; id: string; outcome: string | undefined }> {
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
  const outcome =
    response.status === 200
      ? await eventually(
          async () => {
            const recorded = matchOutcome(target, id);
            return recorded === "pending" ? undefined : recorded;
          },
          20_000,
          `the match outcome of ${id}`,
        )
      : undefined;
  return { status: response.status, id, outcome };
}

/** The recorded match outcome of an inbound id (undefined: none recorded). */
function matchOutcome(target: TestGateway, inboundId: string): string | undefined {
  const db = new Database(target.config.DATABASE_PATH, { readonly: true });
  try {
    return db.prepare("SELECT outcome FROM auto_reply_matches WHERE inbound_id = ?").pluck().get(inboundId) as
      | string
      | undefined;
  } finally {
    db.close();
  }
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

describe("cost of regex rules", () => {
  /** A costly regex as a rule made before the caps existed: written to the database directly. */
  function insertLegacyRule(target: TestGateway, rule: { pattern: string; priority: number; text: string }) {
    const db = new Database(target.config.DATABASE_PATH);
    try {
      const now = Date.now();
      const id = crypto.randomUUID();
      db.prepare(
        `INSERT INTO reply_rules (id, subject, match_type, pattern, ignore_case, priority, reply, enabled, created_at, updated_at)
         VALUES (?, 'legacy', 'regex', ?, 1, ?, ?, 1, ?, ?)`,
      ).run(id, rule.pattern, rule.priority, JSON.stringify(textReply(rule.text)), now, now);
      return id;
    } finally {
      db.close();
    }
  }

  it("refuses a regex whose program is too large, per rule and per token subject (422 naming the field)", async () => {
    const big = await gw.request("POST", "/v1/replies", {
      token,
      body: { match: "regex", pattern: "(?:a|aa|aaa){1000}x", reply: textReply("x") },
    });
    expect(big.status).toBe(422);
    expect(big.json.error.code).toBe("regex_too_large");
    expect(big.json.error.message).toMatch(/^pattern: compiles to 7003 instructions, at most 1000 per rule$/);

    // (?:a|aa|aaa){142}x compiles to 997 instructions: five fit under 5,000, the sixth does not.
    const heavy = await gw.token(["replies"], { sub: "heavy-regexes" });
    const rules: Array<{ id: string }> = [];
    for (let i = 0; i < 5; i++)
      rules.push(
        await createRule(gw, heavy, { match: "regex", pattern: "(?:a|aa|aaa){142}x", reply: textReply("x") }),
      );
    const sixth = await gw.request("POST", "/v1/replies", {
      token: heavy,
      body: { match: "regex", pattern: "(?:a|aa|aaa){142}x", reply: textReply("x"), enabled: false },
    });
    expect(sixth.status).toBe(422);
    expect(sixth.json.error.code).toBe("regex_too_large");
    expect(sixth.json.error.message).toMatch(/^pattern: .* 5982 instructions together, at most 5000$/);
    // Turning a plain rule into the sixth heavy regex is refused the same way; the other subjects are unaffected.
    const plain = await createRule(gw, heavy, { match: "contains", pattern: "x", reply: textReply("x") });
    const patched = await gw.request("PATCH", `/v1/replies/${plain.id}`, {
      token: heavy,
      body: { match: "regex", pattern: "(?:a|aa|aaa){142}x" },
    });
    expect(patched.status).toBe(422);
    expect(patched.json.error.code).toBe("regex_too_large");
    // Changing one of the five for another of the same size stays within the subject's total.
    const same = await gw.request("PATCH", `/v1/replies/${rules[0]?.id}`, {
      token: heavy,
      body: { pattern: "(?:a|aa|aaa){142}y" },
    });
    expect(same.status).toBe(200);
    const light = await gw.token(["replies"], { sub: "light-regexes" });
    await createRule(gw, light, { match: "regex", pattern: "(?:a|aa|aaa){142}x", reply: textReply("x") });
  });

  it("a message that spends the regex budget is answered by Meta's webhook at once, settled once, and a cheaper rule still answers", async () => {
    const budgeted = await startTestGateway(
      { ...cloudEnv(), REPLY_COOLDOWN_SECONDS: "0" },
      { replyMatchBudgetMs: 200 },
    );
    try {
      const bearer = await budgeted.token(["replies"]);
      // Seconds of work on 4,096 characters each (7,003 instructions): far past a 200 ms budget.
      for (let i = 0; i < 3; i++)
        insertLegacyRule(budgeted, { pattern: "(?:a|aa|aaa){1000}x", priority: 1, text: "never" });
      const a = newContact();
      const first = await deliverInbound(budgeted, { from: a, text: "a".repeat(4096) });
      expect(first.status).toBe(200);
      expect(first.outcome).toBe("budget_exhausted");
      expect(repliesTo(budgeted, a)).toEqual([]);
      const spent = () =>
        budgeted
          .logs()
          .split("\n")
          .filter((l) => l.includes("regex budget spent")).length;
      expect(spent()).toBe(1);

      // Meta re-delivers: the outcome is on record, nothing is matched again.
      const again = await deliverInbound(budgeted, { from: a, text: "a".repeat(4096), id: first.id });
      expect(again.outcome).toBe("budget_exhausted");
      await budgeted.gateway.app.inject({ method: "GET", url: "/healthz" });
      expect(spent()).toBe(1);

      // A plain rule ranked after the costly regexes still answers (the untried regexes count as no match).
      await createRule(budgeted, bearer, {
        match: "contains",
        pattern: "aaaa",
        priority: 50,
        reply: textReply("plain"),
      });
      const b = newContact();
      const second = await deliverInbound(budgeted, { from: b, text: "a".repeat(4096) });
      expect(second.outcome).toBe("replied");
      expect(repliesTo(budgeted, b).map((r) => replyText(r.payload))).toEqual(["plain"]);
      expect(spent()).toBe(2);

      // The worker was replaced after being stopped: a cheap regex still matches.
      await createRule(budgeted, bearer, {
        match: "regex",
        pattern: "^ping$",
        priority: 0,
        reply: textReply("pong"),
      });
      const c = newContact();
      expect((await deliverInbound(budgeted, { from: c, text: "ping" })).outcome).toBe("replied");
      expect(repliesTo(budgeted, c).map((r) => replyText(r.payload))).toEqual(["pong"]);
    } finally {
      await budgeted.stop();
    }
  });

  it("Meta's webhook is answered before the regex rules run, and /healthz keeps answering while they do", async () => {
    // Matching on the webhook's answer path would hold the 200 until the budget is spent (the outcome would be
    // settled by then); matching on the event loop would hold every other answer for as long (a single rule here
    // runs for seconds). Bounds are loose (a shared machine): either break holds for over 2 s, not 1 s.
    const budgeted = await startTestGateway(
      { ...cloudEnv(), REPLY_COOLDOWN_SECONDS: "0" },
      { replyMatchBudgetMs: 2_000 },
    );
    try {
      // Ten rules of about half a second each on a fast machine: the 2 s budget is spent whatever the machine.
      for (let i = 0; i < 10; i++)
        insertLegacyRule(budgeted, { pattern: "(?:a|aa|aaa){1000}x", priority: 1, text: "never" });
      const id = newInboundId();
      const body = JSON.stringify(inboundNotification([{ id, from: newContact(), text: "a".repeat(4096) }]));
      const started = performance.now();
      const answered = await budgeted.request("POST", "/webhooks/whatsapp", {
        body,
        headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(APP_SECRET, body) },
      });
      const answerMs = performance.now() - started;
      expect(answered.status).toBe(200);
      // Stored and answered, the match still to come.
      expect(matchOutcome(budgeted, id)).toBe("pending");
      expect(answerMs).toBeLessThan(1_000);
      // The test shares the gateway's event loop: a loop held by matching shows as a long gap between two answers
      // of /healthz (asked every 20 ms), wherever the hold falls (during a request or during the wait).
      const answers: number[] = [performance.now()];
      while (matchOutcome(budgeted, id) === "pending") {
        expect((await budgeted.request("GET", "/healthz")).status).toBe(200);
        answers.push(performance.now());
        await sleep(20);
      }
      // And once settled: a hold that ended with the match falls in this last gap.
      expect((await budgeted.request("GET", "/healthz")).status).toBe(200);
      answers.push(performance.now());
      expect(matchOutcome(budgeted, id)).toBe("budget_exhausted");
      const gaps = answers.slice(1).map((at, i) => Math.round(at - (answers[i] as number)));
      expect(gaps.length).toBeGreaterThanOrEqual(10);
      expect(Math.max(...gaps), `gaps between /healthz answers while matching: ${gaps}`).toBeLessThan(1_000);
    } finally {
      await budgeted.stop();
    }
  });

  it("a match left pending by a stop is settled, once, by the next start", async () => {
    const first = await startTestGateway({ ...cloudEnv(), REPLY_COOLDOWN_SECONDS: "0" });
    const bearer = await first.token(["replies"]);
    await createRule(first, bearer, { match: "contains", pattern: "resume me", reply: textReply("resumed") });
    await first.gateway.stop();
    // What a crash between the webhook's commit and the match leaves behind.
    const contact = newContact();
    const inboundId = newInboundId();
    const db = new Database(first.config.DATABASE_PATH);
    const now = Date.now();
    db.prepare(
      "INSERT INTO inbound_messages (id, sender, type, text, sent_at, received_at, raw) VALUES (?, ?, 'text', ?, ?, ?, '{}')",
    ).run(inboundId, `+${contact}`, "please resume me", now, now);
    db.prepare(
      "INSERT INTO auto_reply_matches (inbound_id, outcome, created_at) VALUES (?, 'pending', ?)",
    ).run(inboundId, now);
    db.close();
    const second = await createGateway(first.config, { logger: false });
    try {
      await second.start();
      const outcome = await eventually(async () => {
        const o = matchOutcome(first, inboundId);
        return o === "pending" ? undefined : o;
      });
      expect(outcome).toBe("replied");
      expect(repliesTo(first, contact).map((r) => replyText(r.payload))).toEqual(["resumed"]);
    } finally {
      await second.stop();
      rmSync(first.dir, { recursive: true, force: true });
    }
  });
});
