import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installErrorHandling } from "../src/http/errors.js";
import { createMetrics } from "../src/metrics.js";
import { openSqliteStore } from "../src/store/sqlite.js";
import { withBrokenCopy } from "./support/broken-copy.js";
import {
  type FakeGraph,
  inboundNotification,
  signWebhook,
  startFakeGraph,
  statusNotification,
} from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// Meta's webhook: the verification handshake, X-Hub-Signature-256 over the raw body, persistence, ordering
// and de-duplication of re-deliveries.

const APP_SECRET = "meta-app-secret-for-tests";
const VERIFY_TOKEN = "verify-token-for-tests";
let fake: FakeGraph;
let gw: TestGateway;
let token: string;

beforeAll(async () => {
  fake = await startFakeGraph();
  gw = await startTestGateway({
    WHATSAPP_TRANSPORT: "cloud",
    GRAPH_API_BASE_URL: fake.baseUrl,
    WHATSAPP_ACCESS_TOKEN: "t",
    WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
    WHATSAPP_APP_SECRET: APP_SECRET,
    WHATSAPP_VERIFY_TOKEN: VERIFY_TOKEN,
  });
  token = await gw.token(["messages:send", "messages:read"]);
});
afterAll(async () => {
  await gw?.stop();
  await fake?.close();
});

function post(body: string, signature?: string, contentType = "application/json") {
  return gw.request("POST", "/webhooks/whatsapp", {
    body,
    headers: {
      "content-type": contentType,
      ...(signature === undefined ? {} : { "x-hub-signature-256": signature }),
    },
  });
}
const signed = (payload: unknown) => {
  const body = JSON.stringify(payload);
  return post(body, signWebhook(APP_SECRET, body));
};

function inboundRows(): Array<{ id: string; sender: string; text: string }> {
  const db = new Database(gw.config.DATABASE_PATH, { readonly: true });
  try {
    return db.prepare("SELECT id, sender, text FROM inbound_messages ORDER BY id").all() as Array<{
      id: string;
      sender: string;
      text: string;
    }>;
  } finally {
    db.close();
  }
}

function messageCount(): number {
  const db = new Database(gw.config.DATABASE_PATH, { readonly: true });
  try {
    return db.prepare("SELECT COUNT(*) FROM messages").pluck().get() as number;
  } finally {
    db.close();
  }
}

async function sentMessage(): Promise<{ id: string; wamid: string }> {
  const r = await gw.request("POST", "/v1/messages", {
    token,
    body: { type: "text", to: "+14155550123", text: { body: "status me" } },
  });
  const s = await eventually(async () => {
    const m = (await gw.request("GET", `/v1/messages/${r.json.id}`, { token })).json;
    return m.status === "sent" ? m : undefined;
  });
  return { id: r.json.id, wamid: s.provider_message_id };
}

const status = async (id: string) => (await gw.request("GET", `/v1/messages/${id}`, { token })).json;

describe("verification handshake", () => {
  it("echoes hub.challenge for the right verify token", async () => {
    const r = await gw.request(
      "GET",
      `/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1158201444`,
    );
    expect(r.status).toBe(200);
    expect(r.text).toBe("1158201444");
  });

  it.each([
    ["a wrong token", `hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1`],
    ["no token", `hub.mode=subscribe&hub.challenge=1`],
    ["another mode", `hub.mode=unsubscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1`],
    [
      "a script as challenge",
      `hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=%3Cscript%3E`,
    ],
  ])("refuses %s with 403", async (_name, query) => {
    const r = await gw.request("GET", `/webhooks/whatsapp?${query}`);
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe("forbidden");
  });
});

interface WebhookTarget {
  post(body: string, signature?: string): Promise<number>;
  inboundIds(): string[];
}

/**
 * Refused forms of one delivery (a message id no other test uses) store nothing; the same delivery signed
 * right is then stored, which shows the look-up would have seen a stored row. Independent of test order.
 */
async function refusedDeliveriesStoreNothing(target: WebhookTarget): Promise<void> {
  const id = `wamid.refused-${randomUUID()}`;
  const payload = inboundNotification([{ id, from: "14155550998", text: "refused?" }]);
  const body = JSON.stringify(payload);
  const refused: Array<[string, string | undefined]> = [
    [body, undefined],
    [body, signWebhook("another-secret", body)],
    [body, signWebhook(APP_SECRET, `${body} `)],
    [JSON.stringify(payload, null, 2), signWebhook(APP_SECRET, body)],
    [body, signWebhook(APP_SECRET, body).slice(7)],
  ];
  const statuses: number[] = [];
  for (const [b, signature] of refused) statuses.push(await target.post(b, signature));
  expect(
    target.inboundIds().filter((x) => x === id),
    "stored from refused deliveries",
  ).toEqual([]);
  expect(statuses).toEqual(refused.map(() => 401));
  expect(await target.post(body, signWebhook(APP_SECRET, body))).toBe(200);
  expect(target.inboundIds().filter((x) => x === id)).toEqual([id]);
}

/** Meta's webhook route from a broken copy of its source, on a store of its own, reached with inject(). */
async function withBrokenRoute(
  replacements: ReadonlyArray<readonly [string, string]>,
  use: (target: WebhookTarget) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "wagate-broken-webhook-"));
  const path = join(dir, "broken.db");
  const store = openSqliteStore(path);
  try {
    await withBrokenCopy<typeof import("../src/http/meta-webhook.js")>(
      new URL("../src/http/meta-webhook.ts", import.meta.url),
      replacements,
      async (broken) => {
        const app = Fastify({ logger: false });
        installErrorHandling(app);
        await app.register(broken.metaWebhookRoutes, {
          store,
          metrics: createMetrics(),
          appSecret: APP_SECRET,
          verifyToken: VERIFY_TOKEN,
        });
        try {
          await use({
            post: async (b, signature) =>
              (
                await app.inject({
                  method: "POST",
                  url: "/webhooks/whatsapp",
                  payload: b,
                  headers: {
                    "content-type": "application/json",
                    ...(signature === undefined ? {} : { "x-hub-signature-256": signature }),
                  },
                })
              ).statusCode,
            inboundIds: () => {
              const db = new Database(path, { readonly: true });
              try {
                return db.prepare("SELECT id FROM inbound_messages").pluck().all() as string[];
              } finally {
                db.close();
              }
            },
          });
        } finally {
          await app.close();
        }
      },
    );
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * One delivery with a malformed and a well-formed inbound item and a malformed status: answered 200, the
 * well-formed item stored, the malformed one not.
 */
async function malformedItemsSkipped(
  target: WebhookTarget,
  statuses: Array<{ id: string; status: string }> = [{ id: "wamid.unknown", status: "teleported" }],
): Promise<void> {
  const inboundId = `wamid.malformed-${randomUUID()}`;
  const payload = statusNotification(statuses) as {
    entry: Array<{ changes: Array<{ value: Record<string, unknown> }> }>;
  };
  const value = payload.entry[0]?.changes[0]?.value as Record<string, unknown>;
  value.messages = [
    { id: `${inboundId}-bad`, from: "not-a-number", timestamp: "1", type: "text", text: { body: "x" } },
    { id: inboundId, from: "14155550997", timestamp: "1", type: "text", text: { body: "kept" } },
  ];
  const body = JSON.stringify(payload);
  expect(await target.post(body, signWebhook(APP_SECRET, body))).toBe(200);
  expect(
    target.inboundIds().filter((id) => id.startsWith(inboundId)),
    "inbound items stored",
  ).toEqual([inboundId]);
}

describe("signature", () => {
  const payload = inboundNotification([{ id: "wamid.sig-check", from: "14155550999", text: "hi" }]);
  const body = JSON.stringify(payload);

  it("refuses a missing signature", async () => {
    const r = await post(body);
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe("invalid_signature");
  });

  it.each([
    ["a signature with another key", signWebhook("another-secret", body)],
    ["a signature of another body", signWebhook(APP_SECRET, `${body} `)],
    ["a truncated signature", signWebhook(APP_SECRET, body).slice(0, 40)],
    ["a sha1 signature", `sha1=${"a".repeat(40)}`],
    ["an empty signature", ""],
    ["the right digest without its prefix", signWebhook(APP_SECRET, body).slice(7)],
  ])("refuses %s", async (_name, signature) => {
    const r = await post(body, signature);
    expect(r.status).toBe(401);
  });

  it("checks the raw bytes, not a re-serialisation", async () => {
    const spaced = JSON.stringify(payload, null, 2);
    expect((await post(spaced, signWebhook(APP_SECRET, body))).status).toBe(401);
    expect((await post(spaced, signWebhook(APP_SECRET, spaced))).status).toBe(200);
  });

  it("stores nothing from refused deliveries", async () => {
    await refusedDeliveriesStoreNothing({
      post: async (b, signature) => (await post(b, signature)).status,
      inboundIds: () => inboundRows().map((r) => r.id),
    });
  });

  it("(the check above fails against a copy of the route that does not check signatures)", async () => {
    await withBrokenRoute(
      [['if (!signatureMatches(appSecret, raw, request.headers["x-hub-signature-256"])) {', "if (false) {"]],
      async (target) => {
        await expect(refusedDeliveriesStoreNothing(target)).rejects.toThrow(/stored from refused deliveries/);
      },
    );
  });

  it("refuses a signed body that is not JSON, and one of another shape", async () => {
    expect((await post("not json", signWebhook(APP_SECRET, "not json"))).status).toBe(400);
    expect((await signed({ object: "page", entry: [] })).status).toBe(400);
  });
});

describe("deliveries", () => {
  it("stores inbound messages and de-duplicates re-deliveries and replays", async () => {
    const payload = inboundNotification([
      { id: "wamid.in-1", from: "14155550111", text: "hello" },
      { id: "wamid.in-2", from: "14155550112", text: "' OR 1=1 --" },
    ]);
    expect((await signed(payload)).status).toBe(200);
    expect((await signed(payload)).status).toBe(200);
    expect((await signed(payload)).status).toBe(200);
    const rows = inboundRows().filter((r) => r.id.startsWith("wamid.in-"));
    expect(rows).toEqual([
      { id: "wamid.in-1", sender: "+14155550111", text: "hello" },
      { id: "wamid.in-2", sender: "+14155550112", text: "' OR 1=1 --" },
    ]);
  });

  it("moves a message's status forward, never backwards", async () => {
    const m = await sentMessage();
    expect((await signed(statusNotification([{ id: m.wamid, status: "read" }]))).status).toBe(200);
    expect((await status(m.id)).status).toBe("read");
    expect((await signed(statusNotification([{ id: m.wamid, status: "delivered" }]))).status).toBe(200);
    expect((await signed(statusNotification([{ id: m.wamid, status: "sent" }]))).status).toBe(200);
    expect((await status(m.id)).status).toBe("read");
  });

  it("records a failure reported by webhook, which a later delivery overrides", async () => {
    const m = await sentMessage();
    await signed(
      statusNotification([
        { id: m.wamid, status: "failed", errors: [{ code: 131026, title: "Message undeliverable" }] },
      ]),
    );
    const failed = await status(m.id);
    expect(failed.status).toBe("failed");
    expect(failed.error).toEqual({ code: "131026", message: "Message undeliverable" });
    await signed(statusNotification([{ id: m.wamid, status: "delivered" }]));
    expect((await status(m.id)).status).toBe("delivered");
  });

  it("ignores statuses for messages it did not send, and skips malformed items", async () => {
    const m = await sentMessage();
    const messagesBefore = messageCount();
    await malformedItemsSkipped(
      {
        post: async (b, signature) => (await post(b, signature)).status,
        inboundIds: () => inboundRows().map((r) => r.id),
      },
      [
        { id: "wamid.unknown", status: "delivered" },
        { id: m.wamid, status: "teleported" },
        { id: m.wamid, status: "delivered" },
      ],
    );
    // The well-formed status applied, the malformed one did not (nor did the unknown message's create anything).
    expect((await status(m.id)).status).toBe("delivered");
    expect(messageCount()).toBe(messagesBefore);
    expect(gw.logs()).toMatch(/"skipped":2,.*items that did not match the expected shape were skipped/);
  });

  it("(the malformed-items check fails against a copy of the route that accepts any sender)", async () => {
    await withBrokenRoute(
      [["from: z.string().regex(/^[0-9]{6,20}$/),", "from: z.string(),"]],
      async (target) => {
        await expect(malformedItemsSkipped(target)).rejects.toThrow(/inbound items stored/);
      },
    );
  });

  it("accepts payloads up to Meta's 3 MB on this route while API routes keep a small limit", async () => {
    const big = inboundNotification(
      Array.from({ length: 40 }, (_, i) => ({
        id: `wamid.big-${i}`,
        from: "14155550123",
        text: "x".repeat(60_000),
      })),
    );
    const body = JSON.stringify(big);
    expect(body.length).toBeGreaterThan(2_000_000);
    expect((await post(body, signWebhook(APP_SECRET, body))).status).toBe(200);
    const tooBig = "x".repeat(3 * 1024 * 1024 + 10);
    expect((await post(tooBig, signWebhook(APP_SECRET, tooBig))).status).toBe(413);
    const api = await gw.request("POST", "/v1/messages", {
      token,
      body: { type: "text", to: "+14155550123", text: { body: "x".repeat(100_000) } },
    });
    expect(api.status).toBe(413);
  });

  it("refuses other content types", async () => {
    expect(
      (await post("a=b", signWebhook(APP_SECRET, "a=b"), "application/x-www-form-urlencoded")).status,
    ).toBe(415);
  });
});
