import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { vcardOf } from "../src/transport/web/vcard.js";
import { type FakeSockets, type FakeWaSocket, fakeSockets } from "./support/fake-wa-socket.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";
import { linkWebNumber } from "./support/web-number.js";

// The outbound types on a WhatsApp Web number (a fake socket with Baileys' shapes): what WhatsApp Web can carry
// goes out as Baileys' content (location, contact cards, reactions, quoted replies); what only the Cloud API
// sends is refused with a 422 before anything is queued.

let fake: FakeSockets;
let gw: TestGateway;
let admin: string;
let sender: string;
let web: { id: string; socket: FakeWaSocket };

beforeAll(async () => {
  fake = fakeSockets();
  gw = await startTestGateway({}, { webSocketFactory: fake.factory });
  admin = await gw.token(["admin"]);
  sender = await gw.token(["messages:send", "messages:read"]);
  const linked = await linkWebNumber(gw, fake, admin, "14155550999");
  web = { id: linked.numberId, socket: linked.socket };
});
afterAll(async () => {
  await gw?.stop();
});

const to = "+14155550123";
const jid = "14155550123@s.whatsapp.net";
const send = (body: Record<string, unknown>) =>
  gw.request("POST", "/v1/messages", { token: sender, body: { from: web.id, to, ...body } });

async function sentOnSocket(id: string) {
  const view = await eventually(async () => {
    const r = await gw.request("GET", `/v1/messages/${id}`, { token: sender });
    return r.json.status === "sent" ? r.json : undefined;
  });
  const sent = web.socket.sent.find((s) => s.id === view.provider_message_id);
  expect(sent).toBeDefined();
  return { view, sent: sent as NonNullable<typeof sent> };
}

describe("web numbers send what WhatsApp Web carries", () => {
  it("a location", async () => {
    const response = await send({
      type: "location",
      location: { latitude: 37.44, longitude: -122.16, name: "Philz Coffee", address: "101 Forest Ave" },
    });
    expect(response.status).toBe(202);
    const { sent, view } = await sentOnSocket(response.json.id);
    expect(view.type).toBe("location");
    expect(sent.jid).toBe(jid);
    expect(sent.content).toEqual({
      location: {
        degreesLatitude: 37.44,
        degreesLongitude: -122.16,
        name: "Philz Coffee",
        address: "101 Forest Ave",
      },
    });
    expect(sent.options).toBeUndefined();
  });

  it("contact cards as vCards", async () => {
    const response = await send({
      type: "contacts",
      contacts: [
        {
          name: { formatted_name: "Barbara Johnson", first_name: "Barbara", last_name: "Johnson" },
          phones: [{ phone: "+1 940 555 1234", type: "WORK", wa_id: "19405551234" }],
          org: { company: "Lucky Shrub" },
        },
      ],
    });
    expect(response.status).toBe(202);
    const { sent } = await sentOnSocket(response.json.id);
    expect(sent.content).toEqual({
      contacts: {
        displayName: "Barbara Johnson",
        contacts: [
          {
            displayName: "Barbara Johnson",
            vcard: [
              "BEGIN:VCARD",
              "VERSION:3.0",
              "N:Johnson;Barbara;;;",
              "FN:Barbara Johnson",
              "ORG:Lucky Shrub;",
              "TEL;type=WORK;waid=19405551234:+1 940 555 1234",
              "END:VCARD",
              "",
            ].join("\n"),
          },
        ],
      },
    });
  });

  it("a reply quoting the customer's message, and a reaction to our own message by our id", async () => {
    const quoting = await send({
      type: "text",
      context: { message_id: "3EB0C767D097B7C7C030" },
      text: { body: "It ships today" },
    });
    expect(quoting.status).toBe(202);
    const quoted = await sentOnSocket(quoting.json.id);
    expect(quoted.sent.content).toEqual({ text: "It ships today" });
    expect(quoted.sent.options?.quoted?.key).toEqual({
      remoteJid: jid,
      id: "3EB0C767D097B7C7C030",
      fromMe: false,
    });

    const reaction = await send({ type: "reaction", reaction: { message_id: quoting.json.id, emoji: "👍" } });
    expect(reaction.status).toBe(202);
    const reacted = await sentOnSocket(reaction.json.id);
    // Our id became the id WhatsApp gave the quoted reply, marked as ours.
    expect(reacted.sent.content).toEqual({
      react: { text: "👍", key: { remoteJid: jid, id: quoted.view.provider_message_id, fromMe: true } },
    });
  });
});

describe("web numbers refuse what only the Cloud API sends: 422 before queueing", () => {
  it.each([
    [
      "interactive",
      "interactive_needs_cloud",
      {
        interactive: {
          type: "button",
          body: { text: "Pick" },
          action: { buttons: [{ type: "reply", reply: { id: "a", title: "A" } }] },
        },
      },
    ],
    // Uploaded media (by id) live at Meta; by link a web number sends them (web-media-send.test.ts).
    ["image", "media_needs_cloud", { image: { id: "1" } }],
    ["video", "media_needs_cloud", { video: { id: "1" } }],
    ["audio", "media_needs_cloud", { audio: { id: "1" } }],
    ["document", "media_needs_cloud", { document: { id: "1" } }],
    ["sticker", "media_needs_cloud", { sticker: { id: "1" } }],
    ["template", "template_needs_cloud", { template: { name: "promo", language: "en_US" } }],
  ])("%s → %s", async (type, code, object) => {
    const before = web.socket.sent.length;
    const response = await send({ type, ...object });
    expect(response.status).toBe(422);
    expect(response.json.error.code).toBe(code);
    const uploaded = (object as Record<string, { id?: string } | undefined>)[type]?.id !== undefined;
    expect(response.json.error.message).toMatch(
      uploaded
        ? new RegExp(`^${type}\\.id: uploaded media are sent by cloud numbers only`)
        : /^type: .* cloud numbers only; from names a web number$/,
    );
    expect(web.socket.sent.length).toBe(before);
  });

  it("queued none of the refused messages", () => {
    const db = new Database(gw.config.DATABASE_PATH, { readonly: true });
    try {
      const kinds = db.prepare("SELECT DISTINCT kind FROM messages ORDER BY kind").pluck().all();
      expect(kinds).toEqual(["contacts", "location", "reaction", "text"]);
    } finally {
      db.close();
    }
  });
});

describe("vCards", () => {
  it("escape what would otherwise add a property of its own", () => {
    const card = vcardOf({
      name: { formatted_name: "Eve\nTEL:+15550000000;x,y\\" },
      phones: [{ phone: "+1 555", type: "WORK\nURL:evil" }],
    });
    expect(card.split("\n")).toEqual([
      "BEGIN:VCARD",
      "VERSION:3.0",
      "N:;;;;",
      "FN:Eve\\nTEL:+15550000000\\;x\\,y\\\\",
      "TEL;type=WORKURLevil:+1 555",
      "END:VCARD",
      "",
    ]);
  });
});
