import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

// The request schema of POST /v1/messages against Meta's stated limits, as a table: each valid message at the
// limit is accepted (202); one character, row or button past it is a JSON 400 naming the field, and nothing is
// queued for it.

let gw: TestGateway;
let token: string;

beforeAll(async () => {
  gw = await startTestGateway();
  token = await gw.token(["messages:send"]);
});
afterAll(async () => {
  await gw?.stop();
});

const to = "+14155550123";
const x = (n: number, c = "x") => c.repeat(n);
const rows = (n: number, prefix = "r") =>
  Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, title: `Row ${i}` }));
const button = (id: string, title = id) => ({ type: "reply", reply: { id, title } });
const buttons = (action: unknown, extra: Record<string, unknown> = {}) => ({
  type: "interactive",
  to,
  interactive: { type: "button", body: { text: "Pick one" }, action, ...extra },
});
const list = (sections: unknown, extra: Record<string, unknown> = {}, listButton = "Choose") => ({
  type: "interactive",
  to,
  interactive: {
    type: "list",
    body: { text: "Pick one" },
    action: { button: listButton, sections },
    ...extra,
  },
});
const cta = (parameters: Record<string, unknown>) => ({
  type: "interactive",
  to,
  interactive: {
    type: "cta_url",
    body: { text: "Open it" },
    action: {
      name: "cta_url",
      parameters: { display_text: "Open", url: "https://example.com", ...parameters },
    },
  },
});
const template = (components: unknown) => ({
  type: "template",
  to,
  template: { name: "ticket", language: "en_US", components },
});

const VALID: Array<[string, unknown]> = [
  ["text of 4096 characters (emoji count as one)", { type: "text", to, text: { body: x(4096, "🙂") } }],
  ["image caption of 1024", { type: "image", to, image: { link: "https://e.com/a.jpg", caption: x(1024) } }],
  ["video by id", { type: "video", to, video: { id: "1234567890" } }],
  ["audio by link", { type: "audio", to, audio: { link: "https://e.com/a.ogg" } }],
  [
    "document with caption and file name",
    { type: "document", to, document: { id: "1", caption: "c", filename: "a.pdf" } },
  ],
  ["sticker", { type: "sticker", to, sticker: { link: "https://e.com/s.webp" } }],
  ["location at the poles", { type: "location", to, location: { latitude: -90, longitude: 180 } }],
  ["contacts, name only", { type: "contacts", to, contacts: [{ name: { formatted_name: "Ana" } }] }],
  [
    "3 reply buttons, titles of 20, ids of 256",
    buttons({ buttons: [button(x(256, "a"), x(20, "A")), button("b"), button("c")] }),
  ],
  [
    "button header text of 60, footer of 60, body of 1024",
    buttons(
      { buttons: [button("a")] },
      {
        header: { type: "text", text: x(60) },
        footer: { text: x(60) },
        body: { text: x(1024) },
      },
    ),
  ],
  [
    "button with a document header",
    buttons(
      { buttons: [button("a")] },
      {
        header: { type: "document", document: { link: "https://e.com/a.pdf", filename: "a.pdf" } },
      },
    ),
  ],
  ["list of 10 rows in one section", list([{ rows: rows(10) }])],
  [
    "list of 10 rows in 10 sections",
    list(Array.from({ length: 10 }, (_, i) => ({ title: `S${i}`, rows: rows(1, `s${i}-`) }))),
  ],
  [
    "list row title 24, description 72, id 200, section title 24, button 20",
    list([{ title: x(24), rows: [{ id: x(200), title: x(24), description: x(72) }] }], {}, x(20)),
  ],
  ["cta_url with display text of 20", cta({ display_text: x(20) })],
  ["reaction", { type: "reaction", to, reaction: { message_id: "wamid.HBgL=", emoji: "👍🏽" } }],
  ["reaction removed", { type: "reaction", to, reaction: { message_id: "wamid.HBgL=", emoji: "" } }],
  ["reaction with a flag", { type: "reaction", to, reaction: { message_id: "wamid.A", emoji: "🇧🇷" } }],
  ["a quoted reply", { type: "text", to, context: { message_id: "wamid.HBgL=" }, text: { body: "yes" } }],
  [
    "template header image, body text",
    template([
      { type: "header", parameters: [{ type: "image", image: { link: "https://e.com/h.jpg" } }] },
      { type: "body", parameters: [{ type: "text", text: "Ana" }] },
    ]),
  ],
  [
    "template coupon code of 15",
    template([
      {
        type: "button",
        sub_type: "copy_code",
        index: 0,
        parameters: [{ type: "coupon_code", coupon_code: x(15) }],
      },
    ]),
  ],
];

/** [case, body, the field the 400 names] */
const INVALID: Array<[string, unknown, string]> = [
  ["an unknown type", { type: "poll", to, poll: {} }, "body.type"],
  ["text of 4097", { type: "text", to, text: { body: x(4097) } }, "body.text.body"],
  [
    "image by link and id",
    { type: "image", to, image: { link: "https://e.com/a.jpg", id: "1" } },
    "body.image",
  ],
  ["image by neither", { type: "image", to, image: { caption: "c" } }, "body.image"],
  ["image over plain http", { type: "image", to, image: { link: "http://e.com/a.jpg" } }, "body.image.link"],
  [
    "image link with credentials",
    { type: "image", to, image: { link: "https://u:p@e.com/a.jpg" } },
    "body.image.link",
  ],
  [
    "image caption of 1025",
    { type: "image", to, image: { id: "1", caption: x(1025) } },
    "body.image.caption",
  ],
  [
    "video caption of 1025",
    { type: "video", to, video: { id: "1", caption: x(1025) } },
    "body.video.caption",
  ],
  [
    "document caption of 1025",
    { type: "document", to, document: { id: "1", caption: x(1025) } },
    "body.document.caption",
  ],
  ["audio with a caption", { type: "audio", to, audio: { id: "1", caption: "no" } }, "body.audio"],
  ["sticker with a caption", { type: "sticker", to, sticker: { id: "1", caption: "no" } }, "body.sticker"],
  ["image with a file name", { type: "image", to, image: { id: "1", filename: "a.jpg" } }, "body.image"],
  [
    "document file name of 241",
    { type: "document", to, document: { id: "1", filename: x(241) } },
    "body.document.filename",
  ],
  ["media id with a slash", { type: "audio", to, audio: { id: "../1" } }, "body.audio.id"],
  [
    "latitude 91",
    { type: "location", to, location: { latitude: 91, longitude: 0 } },
    "body.location.latitude",
  ],
  [
    "longitude -181",
    { type: "location", to, location: { latitude: 0, longitude: -181 } },
    "body.location.longitude",
  ],
  [
    "location name of 1001",
    { type: "location", to, location: { latitude: 0, longitude: 0, name: x(1001) } },
    "body.location.name",
  ],
  ["no contacts", { type: "contacts", to, contacts: [] }, "body.contacts"],
  [
    "258 contacts",
    { type: "contacts", to, contacts: Array(258).fill({ name: { formatted_name: "A" } }) },
    "body.contacts",
  ],
  [
    "contact without formatted_name",
    { type: "contacts", to, contacts: [{ name: { first_name: "A" } }] },
    "body.contacts.0.name.formatted_name",
  ],
  [
    "contact birthday not a date",
    { type: "contacts", to, contacts: [{ name: { formatted_name: "A" }, birthday: "23/01/1999" }] },
    "body.contacts.0.birthday",
  ],
  [
    "contact email not an address",
    { type: "contacts", to, contacts: [{ name: { formatted_name: "A" }, emails: [{ email: "nope" }] }] },
    "body.contacts.0.emails.0.email",
  ],
  [
    "4 reply buttons",
    buttons({ buttons: [button("a"), button("b"), button("c"), button("d")] }),
    "body.interactive.action.buttons",
  ],
  ["no reply button", buttons({ buttons: [] }), "body.interactive.action.buttons"],
  [
    "button title of 21",
    buttons({ buttons: [button("a", x(21))] }),
    "body.interactive.action.buttons.0.reply.title",
  ],
  ["button id of 257", buttons({ buttons: [button(x(257))] }), "body.interactive.action.buttons.0.reply.id"],
  [
    "button id with a trailing space",
    buttons({ buttons: [button("a ")] }),
    "body.interactive.action.buttons.0.reply.id",
  ],
  [
    "two buttons with one title",
    buttons({ buttons: [button("a", "Same"), button("b", "Same")] }),
    "body.interactive.action.buttons",
  ],
  [
    "interactive body of 1025",
    buttons({ buttons: [button("a")] }, { body: { text: x(1025) } }),
    "body.interactive.body.text",
  ],
  [
    "interactive header of 61",
    buttons({ buttons: [button("a")] }, { header: { type: "text", text: x(61) } }),
    "body.interactive.header.text",
  ],
  [
    "interactive footer of 61",
    buttons({ buttons: [button("a")] }, { footer: { text: x(61) } }),
    "body.interactive.footer.text",
  ],
  ["list of 11 rows in one section", list([{ rows: rows(11) }]), "body.interactive.action.sections.0.rows"],
  [
    "list of 11 rows in two sections",
    list([
      { title: "A", rows: rows(6, "a") },
      { title: "B", rows: rows(5, "b") },
    ]),
    "body.interactive.action.sections",
  ],
  [
    "list of 11 sections",
    list(Array.from({ length: 11 }, (_, i) => ({ title: `S${i}`, rows: rows(1, `s${i}`) }))),
    "body.interactive.action.sections",
  ],
  [
    "list row title of 25",
    list([{ rows: [{ id: "a", title: x(25) }] }]),
    "body.interactive.action.sections.0.rows.0.title",
  ],
  [
    "list row description of 73",
    list([{ rows: [{ id: "a", title: "A", description: x(73) }] }]),
    "body.interactive.action.sections.0.rows.0.description",
  ],
  [
    "list row id of 201",
    list([{ rows: [{ id: x(201), title: "A" }] }]),
    "body.interactive.action.sections.0.rows.0.id",
  ],
  [
    "list section title of 25",
    list([{ title: x(25), rows: rows(1) }]),
    "body.interactive.action.sections.0.title",
  ],
  [
    "list sections without titles",
    list([{ rows: rows(1, "a") }, { rows: rows(1, "b") }]),
    "body.interactive.action.sections",
  ],
  [
    "list rows with one id",
    list([
      {
        rows: [
          { id: "a", title: "A" },
          { id: "a", title: "B" },
        ],
      },
    ]),
    "body.interactive.action.sections",
  ],
  ["list button of 21", list([{ rows: rows(1) }], {}, x(21)), "body.interactive.action.button"],
  [
    "list with an image header",
    list([{ rows: rows(1) }], { header: { type: "image", image: { id: "1" } } }),
    "body.interactive.header.type",
  ],
  [
    "cta_url display text of 21",
    cta({ display_text: x(21) }),
    "body.interactive.action.parameters.display_text",
  ],
  ["cta_url over plain http", cta({ url: "http://example.com" }), "body.interactive.action.parameters.url"],
  [
    "reaction of two emoji",
    { type: "reaction", to, reaction: { message_id: "wamid.A", emoji: "👍👍" } },
    "body.reaction.emoji",
  ],
  [
    "reaction of a letter",
    { type: "reaction", to, reaction: { message_id: "wamid.A", emoji: "a" } },
    "body.reaction.emoji",
  ],
  [
    "reaction with a context",
    {
      type: "reaction",
      to,
      context: { message_id: "wamid.A" },
      reaction: { message_id: "wamid.A", emoji: "👍" },
    },
    "body",
  ],
  [
    "context id with a space",
    { type: "text", to, context: { message_id: "wamid A" }, text: { body: "b" } },
    "body.context.message_id",
  ],
  [
    "template header text of 61",
    template([{ type: "header", parameters: [{ type: "text", text: x(61) }] }]),
    "body.template.components.0.parameters.0.text",
  ],
  [
    "template payload in a header",
    template([{ type: "header", parameters: [{ type: "payload", payload: "p" }] }]),
    "body.template.components.0.parameters.0.type",
  ],
  [
    "template header image by link and id",
    template([
      { type: "header", parameters: [{ type: "image", image: { id: "1", link: "https://e.com/a.jpg" } }] },
    ]),
    "body.template.components.0.parameters.0.image",
  ],
  [
    "template coupon code of 16",
    template([{ type: "button", parameters: [{ type: "coupon_code", coupon_code: x(16) }] }]),
    "body.template.components.0.parameters.0.coupon_code",
  ],
  [
    "template header location at latitude 91",
    template([
      { type: "header", parameters: [{ type: "location", location: { latitude: 91, longitude: 0 } }] },
    ]),
    "body.template.components.0.parameters.0.location.latitude",
  ],
  [
    "template language object with a bad code",
    { type: "template", to, template: { name: "t", language: { code: "english" } } },
    "body.template.language.code",
  ],
];

describe("POST /v1/messages: Meta's limits in the schema", () => {
  it.each(VALID)("accepts %s", async (_name, body) => {
    const response = await gw.request("POST", "/v1/messages", { token, body });
    expect(response.json).toEqual({ id: expect.any(String), status: "queued" });
    expect(response.status).toBe(202);
  });

  it.each(INVALID)("refuses %s, naming the field", async (_name, body, field) => {
    const response = await gw.request("POST", "/v1/messages", { token, body });
    expect(response.status).toBe(400);
    expect(response.json.error.code).toBe("invalid_request");
    expect(response.json.error.message.startsWith(`${field}: `)).toBe(true);
  });

  it("queued only the accepted ones, each with its type as its kind", () => {
    const db = new Database(gw.config.DATABASE_PATH, { readonly: true });
    try {
      const kinds = db.prepare("SELECT kind FROM messages ORDER BY rowid").pluck().all();
      expect(kinds).toEqual(VALID.map(([, body]) => (body as { type: string }).type));
    } finally {
      db.close();
    }
  });
});
