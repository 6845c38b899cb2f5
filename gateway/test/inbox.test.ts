import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type FakeGraph,
  graphError,
  inboundMessagesNotification,
  signWebhook,
  startFakeGraph,
} from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";
import { startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.js";

// The inbox: every inbound type Meta documents, through a signed webhook, listed field by field; pages and their
// cursors; conversations (unread counts, the 24-hour window, the last message); read receipts that reach the fake
// Graph API through the number that received the message; who may see what.

const APP_SECRET = "meta-app-secret-for-inbox-tests";
const DEFAULT_PHONE_NUMBER_ID = "106540352242922";
const SUPPORT_PHONE_NUMBER_ID = "106540352242999";
const SUPPORT_TOKEN = "support-number-access-token";
let fake: FakeGraph;
let gw: TestGateway;
let inbox: string;
let otherInbox: string;
let sender: string;
let admin: string;
let reader: string;
let hooks: WebhookReceiver;

beforeAll(async () => {
  fake = await startFakeGraph();
  gw = await startTestGateway({
    WHATSAPP_TRANSPORT: "cloud",
    GRAPH_API_BASE_URL: fake.baseUrl,
    WHATSAPP_ACCESS_TOKEN: "default-number-token",
    WHATSAPP_PHONE_NUMBER_ID: DEFAULT_PHONE_NUMBER_ID,
    WHATSAPP_APP_SECRET: APP_SECRET,
    WHATSAPP_VERIFY_TOKEN: "verify",
    WEBHOOK_ALLOW_HTTP: "true",
    WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
    WEBHOOK_POLL_INTERVAL_MS: "20",
  });
  hooks = await startWebhookReceiver();
  const subscribed = await gw.request("POST", "/v1/webhooks", {
    token: await gw.token(["webhooks"]),
    body: { url: hooks.url, events: ["message.received"] },
  });
  expect(subscribed.status).toBe(201);
  inbox = await gw.token(["inbox"]);
  otherInbox = await gw.token(["inbox"], { sub: "another-team" });
  sender = await gw.token(["messages:send"]);
  admin = await gw.token(["admin"]);
  reader = await gw.token(["messages:read", "messages:send"]);
});
afterAll(async () => {
  await gw?.stop();
  await fake?.close();
  await hooks?.close();
});

async function deliver(payload: unknown): Promise<void> {
  const body = JSON.stringify(payload);
  const res = await gw.request("POST", "/webhooks/whatsapp", {
    body,
    headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(APP_SECRET, body) },
  });
  expect(res.status).toBe(200);
}
const list = (query: string, token = inbox) => gw.request("GET", `/v1/messages${query}`, { token });
const conversations = (query = "", token = inbox) =>
  gw.request("GET", `/v1/conversations${query}`, { token });
const read = (id: string, token = inbox) =>
  gw.request("POST", `/v1/messages/${encodeURIComponent(id)}/read`, { token });

const CUSTOMER = "14155550101";
const QUOTED = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3NjA1QTk0OTQ1NTI2QUZFRjAA";
const SHA = "fOU4uSDyMamKl31eHNT3Rc3fC5RmuPVhfqbkHbd0+nQ=";
const LOOKASIDE = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1003383421387256&ext=1";

/** One message of each inbound type, as Meta's webhook reference shows them, with what the inbox must list. */
const EVERY_TYPE: Array<{
  message: Record<string, unknown> & { id: string; type: string };
  listed: unknown;
}> = [
  {
    message: { id: "wamid.t-text", type: "text", text: { body: "Hello, is the aloe in stock?" } },
    listed: { text: { body: "Hello, is the aloe in stock?" }, context: null },
  },
  {
    message: {
      id: "wamid.t-image",
      type: "image",
      image: {
        caption: "The best succulent ever?",
        mime_type: "image/jpeg",
        sha256: SHA,
        id: "1003383421387256",
        url: LOOKASIDE,
      },
    },
    listed: {
      image: {
        caption: "The best succulent ever?",
        mime_type: "image/jpeg",
        sha256: SHA,
        id: "1003383421387256",
      },
    },
  },
  {
    message: {
      id: "wamid.t-video",
      type: "video",
      video: {
        caption: "Unboxing",
        mime_type: "video/mp4",
        sha256: SHA,
        id: "1166846181421424",
        url: LOOKASIDE,
      },
    },
    listed: { video: { caption: "Unboxing", mime_type: "video/mp4", sha256: SHA, id: "1166846181421424" } },
  },
  {
    message: {
      id: "wamid.t-audio",
      type: "audio",
      audio: {
        mime_type: "audio/ogg; codecs=opus",
        sha256: SHA,
        id: "1003383421387257",
        voice: true,
        url: LOOKASIDE,
      },
    },
    listed: {
      audio: { mime_type: "audio/ogg; codecs=opus", sha256: SHA, id: "1003383421387257", voice: true },
    },
  },
  {
    message: {
      id: "wamid.t-document",
      type: "document",
      document: {
        caption: "Lucky Shrub Invoice",
        filename: "lucky-shrub-invoice.pdf",
        mime_type: "application/pdf",
        sha256: SHA,
        id: "1003383421387258",
        url: LOOKASIDE,
      },
    },
    listed: {
      document: {
        caption: "Lucky Shrub Invoice",
        filename: "lucky-shrub-invoice.pdf",
        mime_type: "application/pdf",
        sha256: SHA,
        id: "1003383421387258",
      },
    },
  },
  {
    message: {
      id: "wamid.t-sticker",
      type: "sticker",
      sticker: {
        mime_type: "image/webp",
        sha256: SHA,
        id: "1003383421387259",
        animated: false,
        url: LOOKASIDE,
      },
    },
    listed: { sticker: { mime_type: "image/webp", sha256: SHA, id: "1003383421387259", animated: false } },
  },
  {
    message: {
      id: "wamid.t-location",
      type: "location",
      location: {
        address: "1 Hacker Way, Menlo Park, CA 94025",
        latitude: 37.483307,
        longitude: -122.148981,
        name: "Philz Coffee",
        url: "https://www.philzcoffee.com/",
      },
    },
    listed: {
      location: {
        address: "1 Hacker Way, Menlo Park, CA 94025",
        latitude: 37.483307,
        longitude: -122.148981,
        name: "Philz Coffee",
        url: "https://www.philzcoffee.com/",
      },
    },
  },
  {
    message: {
      id: "wamid.t-contacts",
      type: "contacts",
      contacts: [
        {
          addresses: [
            {
              city: "Menlo Park",
              country: "United States",
              country_code: "us",
              state: "CA",
              street: "1 Lucky Shrub Way",
              type: "WORK",
              zip: "94025",
            },
          ],
          birthday: "1999-01-23",
          emails: [{ email: "bjohnson@luckyshrub.com", type: "WORK" }],
          name: { first_name: "Barbara", formatted_name: "Barbara J. Johnson", last_name: "Johnson" },
          org: { company: "Lucky Shrub", department: "Legal", title: "Lead Counsel" },
          phones: [{ phone: "+1 (940) 555-1234", type: "WORK", wa_id: "19405551234" }],
          urls: [{ url: "https://www.luckyshrub.com", type: "WORK" }],
        },
      ],
    },
    listed: {
      contacts: [
        {
          addresses: [
            {
              city: "Menlo Park",
              country: "United States",
              country_code: "us",
              state: "CA",
              street: "1 Lucky Shrub Way",
              type: "WORK",
              zip: "94025",
            },
          ],
          birthday: "1999-01-23",
          emails: [{ email: "bjohnson@luckyshrub.com", type: "WORK" }],
          name: { first_name: "Barbara", formatted_name: "Barbara J. Johnson", last_name: "Johnson" },
          org: { company: "Lucky Shrub", department: "Legal", title: "Lead Counsel" },
          phones: [{ phone: "+1 (940) 555-1234", type: "WORK", wa_id: "19405551234" }],
          urls: [{ url: "https://www.luckyshrub.com", type: "WORK" }],
        },
      ],
    },
  },
  {
    message: {
      id: "wamid.t-button-reply",
      type: "interactive",
      context: { from: "15550783881", id: QUOTED },
      interactive: { type: "button_reply", button_reply: { id: "cancel-button", title: "Cancel" } },
    },
    listed: {
      interactive: { type: "button_reply", button_reply: { id: "cancel-button", title: "Cancel" } },
      context: { from: "15550783881", id: QUOTED },
    },
  },
  {
    message: {
      id: "wamid.t-list-reply",
      type: "interactive",
      context: { from: "15550783881", id: QUOTED },
      interactive: {
        type: "list_reply",
        list_reply: { id: "priority_express", title: "Express Shipping", description: "Next Day to 2 Days" },
      },
    },
    listed: {
      interactive: {
        type: "list_reply",
        list_reply: { id: "priority_express", title: "Express Shipping", description: "Next Day to 2 Days" },
      },
      context: { from: "15550783881", id: QUOTED },
    },
  },
  {
    message: {
      id: "wamid.t-button",
      type: "button",
      context: { from: "15550783881", id: QUOTED },
      button: { payload: "Unsubscribe from Promos", text: "Unsubscribe from Promos" },
    },
    listed: {
      button: { payload: "Unsubscribe from Promos", text: "Unsubscribe from Promos" },
      context: { from: "15550783881", id: QUOTED },
    },
  },
  {
    message: {
      id: "wamid.t-reaction",
      type: "reaction",
      reaction: { message_id: QUOTED, emoji: "\uD83D\uDE00" },
    },
    listed: { reaction: { message_id: QUOTED, emoji: "😀" } },
  },
  {
    // A removed reaction: Meta omits `emoji`.
    message: { id: "wamid.t-unreaction", type: "reaction", reaction: { message_id: QUOTED } },
    listed: { reaction: { message_id: QUOTED } },
  },
  {
    message: {
      id: "wamid.t-quote",
      type: "text",
      context: { from: "15550783881", id: QUOTED },
      text: { body: "About this one" },
    },
    listed: { text: { body: "About this one" }, context: { from: "15550783881", id: QUOTED } },
  },
  {
    message: {
      id: "wamid.t-forwarded",
      type: "text",
      context: { forwarded: true, frequently_forwarded: true },
      text: { body: "Forwarded many times" },
    },
    listed: {
      text: { body: "Forwarded many times" },
      context: { forwarded: true, frequently_forwarded: true },
    },
  },
];
const UNSUPPORTED = {
  id: "wamid.t-unsupported",
  type: "unsupported",
  errors: [
    {
      code: 131051,
      title: "Message type unknown",
      message: "Message type unknown",
      error_data: { details: "Message type is currently not supported." },
    },
  ],
  unsupported: { type: "edit" },
};
const UNKNOWN = {
  id: "wamid.t-order",
  type: "order",
  order: {
    catalog_id: "194836987003835",
    text: "Please",
    product_items: [{ product_retailer_id: "di9ozbzfi4", quantity: 2, item_price: 30, currency: "USD" }],
  },
};

describe("inbound messages of every type, from Meta's signed webhook into the inbox", () => {
  it("lists each with its type's fields in Meta's shape, newest first; unknown types as WhatsApp sent them", async () => {
    const timestamp = "1764662400";
    const items = [...EVERY_TYPE.map((t) => t.message), UNSUPPORTED, UNKNOWN].map((m) => ({
      from: CUSTOMER,
      timestamp,
      ...m,
    }));
    await deliver(inboundMessagesNotification(items, { profileName: "Ana Lima" }));

    const res = await list(`?contact=%2B${CUSTOMER}&limit=100`);
    expect(res.status).toBe(200);
    // One delivery: the same arrival time, so the later item of the delivery is the newer.
    expect(res.json.messages.map((m: { id: string }) => m.id)).toEqual(items.map((m) => m.id).reverse());
    const byId = new Map(res.json.messages.map((m: { id: string }) => [m.id, m]));
    for (const { message, listed } of EVERY_TYPE) {
      const view = byId.get(message.id) as Record<string, unknown>;
      const { received_at, ...rest } = view;
      expect(Date.parse(received_at as string)).not.toBeNaN();
      expect(rest).toEqual({
        id: message.id,
        direction: "in",
        number_id: "default",
        from: `+${CUSTOMER}`,
        profile_name: "Ana Lima",
        type: message.type,
        context: null,
        ...(listed as object),
        timestamp: new Date(Number(timestamp) * 1000).toISOString(),
        read_at: null,
      });
    }
    // The medium's download URL needs the number's token and expires: it is never handed out.
    expect(JSON.stringify(res.json)).not.toContain("lookaside");

    for (const raw of [UNSUPPORTED, UNKNOWN]) {
      const view = byId.get(raw.id) as Record<string, unknown>;
      expect(view).toMatchObject({ id: raw.id, type: raw.type, context: null });
      expect(view.whatsapp).toEqual({ from: CUSTOMER, timestamp, ...raw });
    }

    // Stored once: a re-delivery (Meta retries) adds nothing.
    await deliver(inboundMessagesNotification(items, { profileName: "Ana Lima" }));
    expect((await list(`?contact=%2B${CUSTOMER}&limit=100`)).json.messages).toHaveLength(items.length);
  });

  it("hands each message's content to the message.received webhook, as the inbox lists it", async () => {
    const delivered = await eventually(
      async () => {
        const bodies = hooks.received.map((r) => JSON.parse(r.rawBody));
        const found = new Map(bodies.map((b) => [b.data.message_id, b]));
        return found.size >= EVERY_TYPE.length + 2 ? found : undefined;
      },
      10_000,
      "a message.received delivery per message",
    );
    for (const { message, listed } of EVERY_TYPE) {
      const { context, ...fields } = listed as Record<string, unknown>;
      const body = delivered.get(message.id);
      expect(body.type).toBe("message.received");
      expect(body.data.type).toBe(message.type);
      // The same fields as the inbox lists (the inbox answers `context: null` where the message had none).
      expect(body.data.content).toEqual({ ...fields, ...(context ? { context } : {}) });
    }
    // A type the inbox keeps raw has no content; the message object is there as WhatsApp sent it.
    expect(delivered.get(UNKNOWN.id).data).toMatchObject({ type: "order", content: null });
    expect(delivered.get(UNKNOWN.id).data.whatsapp).toMatchObject(UNKNOWN);
  });

  it("keeps the medium's id beside the message, for the media routes to find which number received it", async () => {
    const db = new Database(gw.config.DATABASE_PATH, { readonly: true });
    try {
      const rows = db
        .prepare("SELECT id, media_id FROM inbound_messages WHERE media_id IS NOT NULL ORDER BY media_id")
        .all();
      expect(rows).toEqual([
        { id: "wamid.t-image", media_id: "1003383421387256" },
        { id: "wamid.t-audio", media_id: "1003383421387257" },
        { id: "wamid.t-document", media_id: "1003383421387258" },
        { id: "wamid.t-sticker", media_id: "1003383421387259" },
        { id: "wamid.t-video", media_id: "1166846181421424" },
      ]);
    } finally {
      db.close();
    }
  });

  it("keeps a message whose type's object does not match, as WhatsApp sent it", async () => {
    const broken = {
      from: "14155550102",
      id: "wamid.t-broken-image",
      type: "image",
      image: { caption: "no id" },
    };
    await deliver(inboundMessagesNotification([broken]));
    const [view] = (await list("?contact=%2B14155550102")).json.messages;
    expect(view).toMatchObject({ id: broken.id, type: "image", context: null });
    expect(view.image).toBeUndefined();
    expect(view.whatsapp).toMatchObject(broken);
  });
});

describe("pages: newest first, an opaque cursor, filters", () => {
  const CONTACT = "14155550110";
  it("walks every message once, page by page; later arrivals never slip into later pages", async () => {
    const ids = Array.from({ length: 7 }, (_, i) => `wamid.page-${i}`);
    for (const id of ids)
      await deliver(inboundMessagesNotification([{ from: CONTACT, id, type: "text", text: { body: id } }]));

    const first = await list(`?contact=%2B${CONTACT}&limit=3`);
    expect(first.status).toBe(200);
    expect(first.json.messages.map((m: { id: string }) => m.id)).toEqual([
      "wamid.page-6",
      "wamid.page-5",
      "wamid.page-4",
    ]);
    expect(first.json.next).toMatch(/^[A-Za-z0-9_-]+$/);

    // Arrives between two page reads: it is newer than the first page, so no later page shows it.
    await deliver(
      inboundMessagesNotification([
        { from: CONTACT, id: "wamid.page-late", type: "text", text: { body: "late" } },
      ]),
    );

    const second = await list(`?contact=%2B${CONTACT}&limit=3&before=${first.json.next}`);
    expect(second.json.messages.map((m: { id: string }) => m.id)).toEqual([
      "wamid.page-3",
      "wamid.page-2",
      "wamid.page-1",
    ]);
    const third = await list(`?contact=%2B${CONTACT}&limit=3&before=${second.json.next}`);
    expect(third.json.messages.map((m: { id: string }) => m.id)).toEqual(["wamid.page-0"]);
    expect(third.json.next).toBeNull();

    // The plus may be left out of the contact (a query string's `+` is a space).
    const all = await list(`?contact=${CONTACT}`);
    expect(all.json.messages[0].id).toBe("wamid.page-late");
    expect(all.json.messages).toHaveLength(8);
    expect(all.json.next).toBeNull();
  });

  it("defaults to 50 per page and to inbound messages; filters by number", async () => {
    const page = await list("");
    expect(page.status).toBe(200);
    expect(page.json.messages.length).toBeLessThanOrEqual(50);
    expect(page.json.messages.every((m: { direction: string }) => m.direction === "in")).toBe(true);
    const ofDefault = await list("?number=default&limit=100");
    expect(ofDefault.json.messages.length).toBeGreaterThan(0);
    expect(ofDefault.json.messages.every((m: { number_id: string }) => m.number_id === "default")).toBe(true);
  });

  it("refuses unknown parameters, bad limits, foreign cursors and unknown numbers, naming the field", async () => {
    const cases: Array<[string, number, RegExp]> = [
      ["?page=2", 400, /unknown field page/],
      ["?limit=0", 400, /^querystring\.limit/],
      ["?limit=101", 400, /^querystring\.limit/],
      ["?limit=ten", 400, /^querystring\.limit/],
      ["?direction=both", 400, /^querystring\.direction/],
      ["?contact=12", 400, /^querystring\.contact/],
      ["?before=not*a*cursor", 400, /^querystring\.before/],
      [`?before=${Buffer.from("o.12").toString("base64url")}`, 400, /^querystring\.before: not a cursor/],
      ["?number=nonexistent", 422, /^number: no such number/],
    ];
    for (const [query, status, message] of cases) {
      const res = await list(query);
      expect([query, res.status]).toEqual([query, status]);
      expect(res.json.error.message).toMatch(message);
    }
    const res = await conversations("?sort=name");
    expect(res.status).toBe(400);
    expect(res.json.error.message).toMatch(/unknown field sort/);
  });
});

describe("outbound messages: the token subject's own", () => {
  it("lists a subject's sent messages newest first, and nobody else's", async () => {
    const to = "+14155550120";
    const ids: string[] = [];
    for (const body of ["first", "second", "third"]) {
      const res = await gw.request("POST", "/v1/messages", {
        token: sender,
        body: { type: "text", to, text: { body } },
      });
      expect(res.status).toBe(202);
      ids.push(res.json.id);
    }
    await fake.waitForRequests(3);
    const mine = await eventually(async () => {
      const res = await list(`?direction=out&contact=%2B14155550120&limit=2`);
      return res.json.messages.every((m: { status: string }) => m.status === "sent") ? res : undefined;
    });
    expect(mine.json.messages.map((m: { id: string }) => m.id)).toEqual([ids[2], ids[1]]);
    expect(mine.json.messages[0]).toMatchObject({
      id: ids[2],
      direction: "out",
      number_id: "default",
      to,
      kind: "text",
      type: "text",
      text: { body: "third" },
      status: "sent",
      error: null,
    });
    expect(mine.json.messages[0].provider_message_id).toMatch(/^wamid\./);
    const rest = await list(`?direction=out&contact=%2B14155550120&limit=2&before=${mine.json.next}`);
    expect(rest.json.messages.map((m: { id: string }) => m.id)).toEqual([ids[0]]);
    expect(rest.json.next).toBeNull();

    // Another subject's inbox token sees the same inbound messages but none of these.
    expect((await list("?direction=out", otherInbox)).json.messages).toEqual([]);
    // A cursor of the inbound listing is not one of this listing.
    const inboundCursor = (await list("?limit=1")).json.next;
    expect((await list(`?direction=out&before=${inboundCursor}`)).status).toBe(400);
  });
});

describe("conversations", () => {
  const ANA = "14155550130";
  const BEN = "14155550131";
  it("one per contact and number: unread count, last message, and when the 24-hour window closes", async () => {
    const now = Math.floor(Date.now() / 1000);
    const twoDaysAgo = now - 2 * 24 * 3600;
    await deliver(
      inboundMessagesNotification([
        { from: BEN, id: "wamid.ben-1", type: "text", text: { body: "old" }, timestamp: String(twoDaysAgo) },
      ]),
    );
    await deliver(
      inboundMessagesNotification(
        [
          { from: ANA, id: "wamid.ana-1", type: "text", text: { body: "one" }, timestamp: String(now - 60) },
          { from: ANA, id: "wamid.ana-2", type: "text", text: { body: "two" }, timestamp: String(now - 30) },
          {
            from: ANA,
            id: "wamid.ana-3",
            type: "location",
            location: { latitude: 1.5, longitude: 2.5 },
            timestamp: String(now),
          },
        ],
        { profileName: "Ana" },
      ),
    );
    const res = await conversations("?limit=2");
    expect(res.status).toBe(200);
    const [ana, ben] = res.json.conversations;
    expect(ana).toMatchObject({
      contact: `+${ANA}`,
      number_id: "default",
      profile_name: "Ana",
      unread: 3,
      last_inbound_at: new Date(now * 1000).toISOString(),
      window_closes_at: new Date((now + 24 * 3600) * 1000).toISOString(),
      window_open: true,
    });
    expect(ana.last_message).toMatchObject({
      id: "wamid.ana-3",
      direction: "in",
      location: { latitude: 1.5, longitude: 2.5 },
    });
    expect(ben).toMatchObject({
      contact: `+${BEN}`,
      unread: 1,
      window_closes_at: new Date((twoDaysAgo + 24 * 3600) * 1000).toISOString(),
      window_open: false,
    });
    const rest = await conversations(`?limit=2&before=${res.json.next}`);
    expect(rest.status).toBe(200);
    const contacts = rest.json.conversations.map((c: { contact: string }) => c.contact);
    expect(contacts).not.toContain(`+${ANA}`);
    expect(contacts).not.toContain(`+${BEN}`);

    // The subject's reply is the conversation's last message, for that subject only.
    const reply = await gw.request("POST", "/v1/messages", {
      token: sender,
      body: { type: "text", to: `+${ANA}`, text: { body: "On it" } },
    });
    expect(reply.status).toBe(202);
    const mine = (await conversations(`?contact=%2B${ANA}`)).json.conversations;
    expect(mine).toHaveLength(1);
    expect(mine[0].last_message).toMatchObject({
      id: reply.json.id,
      direction: "out",
      text: { body: "On it" },
    });
    expect(mine[0].unread).toBe(3);
    // Sent before the read receipts below script the fake's answers (the outbox must not take them).
    await eventually(async () => {
      const out = (await list(`?direction=out&contact=%2B${ANA}`)).json.messages;
      return out[0]?.status === "sent" ? true : undefined;
    });
    const theirs = (await conversations(`?contact=%2B${ANA}`, otherInbox)).json.conversations;
    expect(theirs[0].last_message).toMatchObject({ id: "wamid.ana-3", direction: "in" });
  });

  it("marking a message read sends Meta's read receipt, and marks it and the earlier ones: unread drops", async () => {
    const before = fake.readReceipts().length;
    const res = await read("wamid.ana-2");
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ id: "wamid.ana-2", status: "read", unread: 1 });
    const receipts = fake.readReceipts().slice(before);
    expect(receipts).toHaveLength(1);
    expect(receipts[0]?.phoneNumberId).toBe(DEFAULT_PHONE_NUMBER_ID);
    expect(receipts[0]?.body).toEqual({
      messaging_product: "whatsapp",
      status: "read",
      message_id: "wamid.ana-2",
    });
    const call = fake.requests.filter((r) => (r.body as { status?: string })?.status === "read").at(-1);
    expect(call?.headers.authorization).toBe("Bearer default-number-token");

    const [ana] = (await conversations(`?contact=%2B${ANA}`)).json.conversations;
    expect(ana.unread).toBe(1);
    const listed = (await list(`?contact=%2B${ANA}`)).json.messages;
    const readAt = new Map(listed.map((m: { id: string; read_at: string | null }) => [m.id, m.read_at]));
    expect(readAt.get("wamid.ana-3")).toBeNull();
    expect(readAt.get("wamid.ana-2")).toBe(res.json.read_at);
    expect(readAt.get("wamid.ana-1")).toBe(res.json.read_at);

    // Again: WhatsApp takes the receipt again (harmless); the first read time stays.
    const again = await read("wamid.ana-2");
    expect(again.status).toBe(200);
    expect(again.json.read_at).toBe(res.json.read_at);
    expect(fake.readReceipts().length).toBe(before + 2);
  });

  it("leaves the message unread when WhatsApp refuses the receipt or cannot take it now", async () => {
    fake.script(graphError(131009, 400, "(#131009) Parameter value is not valid"));
    const refused = await read("wamid.ana-3");
    expect(refused.status).toBe(502);
    expect(refused.json.error).toMatchObject({ code: "read_receipt_refused" });
    expect(refused.json.error.message).toContain("131009");

    fake.script(graphError(130429, 400, "(#130429) Rate limit hit"));
    const busy = await read("wamid.ana-3");
    expect(busy.status).toBe(503);
    expect(busy.json.error.code).toBe("read_receipt_unavailable");
    expect(busy.headers.get("retry-after")).toBe("5");

    const [ana] = (await conversations(`?contact=%2B${ANA}`)).json.conversations;
    expect(ana.unread).toBe(1);
    expect((await read("wamid.does-not-exist")).status).toBe(404);
  });

  it("sends the receipt through the number that received the message, with that number's token", async () => {
    const created = await gw.request("POST", "/v1/numbers", {
      token: admin,
      body: {
        name: "support",
        transport: "cloud",
        cloud: { phone_number_id: SUPPORT_PHONE_NUMBER_ID, access_token: SUPPORT_TOKEN },
      },
    });
    expect(created.status).toBe(201);
    const numberId = created.json.id;
    await deliver(
      inboundMessagesNotification(
        [{ from: ANA, id: "wamid.support-1", type: "text", text: { body: "to support" } }],
        {
          phoneNumberId: SUPPORT_PHONE_NUMBER_ID,
        },
      ),
    );
    // The same contact on two numbers: two conversations.
    const both = (await conversations(`?contact=%2B${ANA}`)).json.conversations;
    expect(both.map((c: { number_id: string }) => c.number_id)).toEqual([numberId, "default"]);
    const ofSupport = await list(`?number=${numberId}`);
    expect(ofSupport.json.messages.map((m: { id: string }) => m.id)).toEqual(["wamid.support-1"]);

    const res = await read("wamid.support-1");
    expect(res.status).toBe(200);
    const call = fake.requests.filter((r) => (r.body as { status?: string })?.status === "read").at(-1);
    expect(call?.path).toBe(`/v21.0/${SUPPORT_PHONE_NUMBER_ID}/messages`);
    expect(call?.headers.authorization).toBe(`Bearer ${SUPPORT_TOKEN}`);
    expect(call?.body).toEqual({
      messaging_product: "whatsapp",
      status: "read",
      message_id: "wamid.support-1",
    });
    // The default number's conversation with the same contact keeps its unread message.
    const after = (await conversations(`?contact=%2B${ANA}`)).json.conversations;
    expect(after.map((c: { unread: number }) => c.unread)).toEqual([0, 1]);
  });
});

describe("who may read the inbox", () => {
  it("scope inbox, or admin; 401 without a token, 403 without the scope", async () => {
    const routes: Array<[string, string]> = [
      ["GET", "/v1/messages"],
      ["GET", "/v1/conversations"],
      ["POST", `/v1/messages/${encodeURIComponent("wamid.t-text")}/read`],
    ];
    for (const [method, path] of routes) {
      expect((await gw.request(method, path)).status).toBe(401);
      const forbidden = await gw.request(method, path, { token: reader });
      expect(forbidden.status).toBe(403);
      expect(forbidden.json.error.code).toBe("forbidden");
      expect((await gw.request(method, path, { token: admin })).status).toBe(200);
    }
    // GET /v1/messages/:id stays what it was: messages:read, one's own outbound message.
    const own = await gw.request("POST", "/v1/messages", {
      token: reader,
      body: { type: "text", to: "+14155550199", text: { body: "x" } },
    });
    expect((await gw.request("GET", `/v1/messages/${own.json.id}`, { token: reader })).status).toBe(200);
    expect((await gw.request("GET", `/v1/messages/${own.json.id}`, { token: inbox })).status).toBe(403);
  });
});
