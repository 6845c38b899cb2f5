import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inboundMessagesNotification, signWebhook } from "./support/fake-graph.js";
import { type FakeSockets, type FakeWaSocket, fakeSockets } from "./support/fake-wa-socket.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";
import { linkWebNumber } from "./support/web-number.js";
import { startWebhookReceiver, type WebhookReceiver } from "./support/webhook-receiver.js";

// A WhatsApp Web number's inbound messages of every type, as Baileys decodes them (`messages.upsert` from a fake
// socket with Baileys' shapes), listed by the inbox in the same shape as Meta's; read receipts through the socket.

const APP_SECRET = "app-secret-of-the-sandbox-inbox";
let fake: FakeSockets;
let gw: TestGateway;
let admin: string;
let inbox: string;
let numberId: string;
let socket: FakeWaSocket;
let hooks: WebhookReceiver;

beforeAll(async () => {
  fake = fakeSockets();
  gw = await startTestGateway(
    {
      WEB_RECONNECT_BASE_MS: "20",
      WEB_RECONNECT_MAX_MS: "100",
      WHATSAPP_APP_SECRET: APP_SECRET,
      WEBHOOK_ALLOW_HTTP: "true",
      WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
      WEBHOOK_POLL_INTERVAL_MS: "20",
    },
    { webSocketFactory: fake.factory },
  );
  admin = await gw.token(["admin"]);
  inbox = await gw.token(["inbox"]);
  hooks = await startWebhookReceiver();
  const subscribed = await gw.request("POST", "/v1/webhooks", {
    token: await gw.token(["webhooks"]),
    body: { url: hooks.url, events: ["message.received"] },
  });
  expect(subscribed.status).toBe(201);
  ({ numberId, socket } = await linkWebNumber(gw, fake, admin, "14155550900"));
});
afterAll(async () => {
  await gw?.stop();
  await hooks?.close();
});

const CUSTOMER = "14155550901";
const SHA = new Uint8Array(Array.from({ length: 32 }, (_, i) => i));
const SHA_B64 = Buffer.from(SHA).toString("base64");
const QUOTED = "3EB0C767D0D1A6A5C4F1";
const VCARD = [
  "BEGIN:VCARD",
  "VERSION:3.0",
  "FN:Barbara Johnson",
  "ORG:Lucky Shrub;",
  "TEL;type=CELL;type=VOICE;waid=19405551234:+1 940-555-1234",
  "EMAIL:bjohnson@luckyshrub.com",
  "END:VCARD",
].join("\n");

/** Baileys' decoded content (proto.IMessage) and what the inbox lists for it. */
const EVERY_TYPE: Array<{
  id: string;
  message: Record<string, unknown>;
  type: string;
  listed: Record<string, unknown>;
}> = [
  { id: "W-TEXT", message: { conversation: "Hello" }, type: "text", listed: { text: { body: "Hello" } } },
  {
    id: "W-QUOTE",
    message: {
      extendedTextMessage: {
        text: "About this",
        contextInfo: {
          stanzaId: QUOTED,
          participant: "14155550900@s.whatsapp.net",
          quotedMessage: { conversation: "x" },
        },
      },
    },
    type: "text",
    listed: { text: { body: "About this" }, context: { id: QUOTED, from: "14155550900" } },
  },
  {
    id: "W-IMAGE",
    message: {
      imageMessage: {
        mimetype: "image/jpeg",
        caption: "Look",
        fileSha256: SHA,
        mediaKey: new Uint8Array(32),
        url: "https://mmg.whatsapp.net/x",
      },
    },
    type: "image",
    listed: { image: { id: "W-IMAGE", mime_type: "image/jpeg", sha256: SHA_B64, caption: "Look" } },
  },
  {
    id: "W-VIDEO",
    message: { videoMessage: { mimetype: "video/mp4", caption: "Clip", fileSha256: SHA } },
    type: "video",
    listed: { video: { id: "W-VIDEO", mime_type: "video/mp4", sha256: SHA_B64, caption: "Clip" } },
  },
  {
    id: "W-VOICE",
    message: { audioMessage: { mimetype: "audio/ogg; codecs=opus", ptt: true, fileSha256: SHA } },
    type: "audio",
    listed: { audio: { id: "W-VOICE", mime_type: "audio/ogg; codecs=opus", sha256: SHA_B64, voice: true } },
  },
  {
    id: "W-DOC",
    message: {
      documentWithCaptionMessage: {
        message: {
          documentMessage: {
            mimetype: "application/pdf",
            fileName: "invoice.pdf",
            caption: "Invoice",
            fileSha256: SHA,
          },
        },
      },
    },
    type: "document",
    listed: {
      document: {
        id: "W-DOC",
        mime_type: "application/pdf",
        sha256: SHA_B64,
        caption: "Invoice",
        filename: "invoice.pdf",
      },
    },
  },
  {
    id: "W-STICKER",
    message: { stickerMessage: { mimetype: "image/webp", isAnimated: true, fileSha256: SHA } },
    type: "sticker",
    listed: { sticker: { id: "W-STICKER", mime_type: "image/webp", sha256: SHA_B64, animated: true } },
  },
  {
    id: "W-LOCATION",
    message: {
      locationMessage: {
        degreesLatitude: 37.483307,
        degreesLongitude: -122.148981,
        name: "Philz Coffee",
        address: "1 Hacker Way",
      },
    },
    type: "location",
    listed: {
      location: {
        latitude: 37.483307,
        longitude: -122.148981,
        name: "Philz Coffee",
        address: "1 Hacker Way",
      },
    },
  },
  {
    id: "W-CONTACT",
    message: { contactMessage: { displayName: "Barbara Johnson", vcard: VCARD } },
    type: "contacts",
    listed: {
      contacts: [
        {
          name: { formatted_name: "Barbara Johnson" },
          phones: [{ phone: "+1 940-555-1234", wa_id: "19405551234", type: "CELL" }],
          emails: [{ email: "bjohnson@luckyshrub.com" }],
          org: { company: "Lucky Shrub" },
        },
      ],
    },
  },
  {
    id: "W-BUTTON-REPLY",
    message: { buttonsResponseMessage: { selectedButtonId: "cancel-button", selectedDisplayText: "Cancel" } },
    type: "interactive",
    listed: { interactive: { type: "button_reply", button_reply: { id: "cancel-button", title: "Cancel" } } },
  },
  {
    id: "W-LIST-REPLY",
    message: {
      listResponseMessage: {
        title: "Express Shipping",
        description: "Next day",
        singleSelectReply: { selectedRowId: "priority_express" },
      },
    },
    type: "interactive",
    listed: {
      interactive: {
        type: "list_reply",
        list_reply: { id: "priority_express", title: "Express Shipping", description: "Next day" },
      },
    },
  },
  {
    id: "W-TEMPLATE-BUTTON",
    message: {
      templateButtonReplyMessage: { selectedId: "unsubscribe", selectedDisplayText: "Unsubscribe" },
    },
    type: "button",
    listed: { button: { payload: "unsubscribe", text: "Unsubscribe" } },
  },
  {
    id: "W-REACTION",
    message: {
      reactionMessage: {
        key: { remoteJid: `${CUSTOMER}@s.whatsapp.net`, fromMe: true, id: QUOTED },
        text: "👍",
      },
    },
    type: "reaction",
    listed: { reaction: { message_id: QUOTED, emoji: "👍" } },
  },
  {
    id: "W-UNREACTION",
    message: {
      reactionMessage: {
        key: { remoteJid: `${CUSTOMER}@s.whatsapp.net`, fromMe: true, id: QUOTED },
        text: "",
      },
    },
    type: "reaction",
    listed: { reaction: { message_id: QUOTED } },
  },
  {
    id: "W-EPHEMERAL",
    message: { ephemeralMessage: { message: { conversation: "disappearing" } } },
    type: "text",
    listed: { text: { body: "disappearing" } },
  },
];

describe("a web number's inbound messages in the inbox", () => {
  it("lists every type in Meta's shape; a type it does not know as the gateway received it", async () => {
    socket.inboundContent([
      ...EVERY_TYPE.map((t) => ({ id: t.id, from: CUSTOMER, message: t.message, pushName: "Ana" })),
      { id: "W-POLL", from: CUSTOMER, message: { pollCreationMessage: { name: "Which day?" } } },
      // WhatsApp's own signalling (a deleted message) is no message of the chat.
      { id: "W-PROTOCOL", from: CUSTOMER, message: { protocolMessage: { type: 0, key: { id: QUOTED } } } },
    ]);
    const res = await eventually(async () => {
      const page = await gw.request("GET", `/v1/messages?number=${numberId}&limit=100`, { token: inbox });
      return page.json.messages.length >= EVERY_TYPE.length + 1 ? page : undefined;
    });
    const byId = new Map(res.json.messages.map((m: { id: string }) => [m.id, m]));
    for (const t of EVERY_TYPE) {
      const view = byId.get(t.id) as Record<string, unknown>;
      expect(view).toBeDefined();
      const { received_at, timestamp, ...rest } = view;
      expect(rest).toEqual({
        id: t.id,
        direction: "in",
        number_id: numberId,
        from: `+${CUSTOMER}`,
        profile_name: "Ana",
        type: t.type,
        context: null,
        ...t.listed,
        read_at: null,
      });
    }
    expect(byId.get("W-POLL")).toMatchObject({
      type: "pollCreation",
      context: null,
      whatsapp: { id: "W-POLL", from: CUSTOMER },
    });
    expect(byId.has("W-PROTOCOL")).toBe(false);
    // Baileys' media keys never reach the store or the listing.
    expect(JSON.stringify(res.json)).not.toContain("mmg.whatsapp.net");

    const [conversation] = (await gw.request("GET", `/v1/conversations?number=${numberId}`, { token: inbox }))
      .json.conversations;
    expect(conversation).toMatchObject({
      contact: `+${CUSTOMER}`,
      number_id: numberId,
      profile_name: "Ana",
      unread: EVERY_TYPE.length + 1,
    });
  });

  it("hands each message's content to the message.received webhook, as the inbox lists it", async () => {
    const delivered = await eventually(
      async () => {
        const found = new Map(
          hooks.received.map((r) => JSON.parse(r.rawBody)).map((b) => [b.data.message_id, b]),
        );
        return found.size >= EVERY_TYPE.length + 1 ? found : undefined;
      },
      10_000,
      "a message.received delivery per message",
    );
    for (const t of EVERY_TYPE) {
      const body = delivered.get(t.id);
      expect(body.data).toMatchObject({ number_id: numberId, from: `+${CUSTOMER}`, type: t.type });
      expect(body.data.content).toEqual(t.listed);
    }
    expect(delivered.get("W-POLL").data).toMatchObject({ type: "pollCreation", content: null });
    // Baileys' media keys and URLs never reach a receiver.
    expect(hooks.received.map((r) => r.rawBody).join("\n")).not.toContain("mmg.whatsapp.net");
  });

  it("marks read through the socket (Baileys' readMessages), and unread drops", async () => {
    const res = await gw.request("POST", "/v1/messages/W-TEMPLATE-BUTTON/read", { token: inbox });
    expect(res.status).toBe(200);
    expect(socket.readReceipts).toEqual([
      { remoteJid: `${CUSTOMER}@s.whatsapp.net`, id: "W-TEMPLATE-BUTTON", fromMe: false },
    ]);
    // Messages that arrived after it in the same chat stay unread.
    expect(res.json.unread).toBe(
      EVERY_TYPE.length + 1 - EVERY_TYPE.findIndex((t) => t.id === "W-TEMPLATE-BUTTON") - 1,
    );

    // A contact WhatsApp addresses by LID: the receipt names the chat as the message came in.
    socket.emit("messages.upsert", {
      type: "notify",
      messages: [
        {
          key: {
            remoteJid: "201928374650123@lid",
            remoteJidAlt: "14155550902@s.whatsapp.net",
            fromMe: false,
            id: "W-LID",
          } as never,
          messageTimestamp: Math.floor(Date.now() / 1000),
          message: { conversation: "via lid" },
        },
      ],
    });
    await eventually(async () =>
      (await gw.request("POST", "/v1/messages/W-LID/read", { token: inbox })).status === 200
        ? true
        : undefined,
    );
    expect(socket.readReceipts.at(-1)).toEqual({
      remoteJid: "201928374650123@lid",
      id: "W-LID",
      fromMe: false,
    });
    const [lid] = (await gw.request("GET", "/v1/messages?contact=%2B14155550902", { token: inbox })).json
      .messages;
    expect(lid).toMatchObject({ id: "W-LID", from: "+14155550902", text: { body: "via lid" } });

    socket.failReads = new Error("socket closed");
    const failed = await gw.request("POST", "/v1/messages/W-POLL/read", { token: inbox });
    expect(failed.status).toBe(503);
    expect(failed.json.error.code).toBe("read_receipt_unavailable");
    socket.failReads = undefined;
  });
});

describe("the sandbox (the local stack's default number)", () => {
  it("records the read receipt in the sandbox outbox instead of sending it", async () => {
    const body = JSON.stringify(
      inboundMessagesNotification([
        { from: "14155550950", id: "wamid.sandbox-1", type: "text", text: { body: "hi" } },
      ]),
    );
    const delivered = await gw.request("POST", "/webhooks/whatsapp", {
      body,
      headers: { "content-type": "application/json", "x-hub-signature-256": signWebhook(APP_SECRET, body) },
    });
    expect(delivered.status).toBe(200);
    const res = await gw.request("POST", "/v1/messages/wamid.sandbox-1/read", { token: inbox });
    expect(res.status).toBe(200);
    const lines = readFileSync(gw.config.SANDBOX_OUTBOX_PATH, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line));
    expect(lines.filter((l) => l.status === "read")).toEqual([
      { status: "read", message_id: "wamid.sandbox-1", at: expect.any(String) },
    ]);
  });
});
