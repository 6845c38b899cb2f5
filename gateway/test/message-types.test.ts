import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type FakeGraph, graphError, startFakeGraph } from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";
import { invalidMessageBody } from "./support/graph-message-shapes.js";

// Every outbound type of POST /v1/messages through the cloud transport to the fake Graph API, which refuses
// (error #100) any body Meta's documentation would refuse: what Meta receives is compared field by field with
// Meta's documented message object. Then quoted replies and reactions naming our message ids, mapped to Meta's.

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
    OUTBOX_MAX_ATTEMPTS: "20",
  });
  token = await gw.token(["messages:send", "messages:read"]);
});
afterAll(async () => {
  await gw?.stop();
  await fake?.close();
});
beforeEach(() => {
  fake.clearScript();
  fake.requests.length = 0;
});

async function settled(id: string) {
  return eventually(
    async () => {
      const r = await gw.request("GET", `/v1/messages/${id}`, { token });
      return r.json.status !== "queued" ? r.json : undefined;
    },
    15_000,
    `message ${id} to settle`,
  );
}

const send = (body: unknown, tokenToUse = token) =>
  gw.request("POST", "/v1/messages", { token: tokenToUse, body });

/** What Meta receives for every message: the envelope around the type's object. */
function metaBody(id: string, type: string, object: unknown, extra: Record<string, unknown> = {}) {
  return {
    messaging_product: "whatsapp",
    recipient_type: "individual",
    to: "14155550123",
    biz_opaque_callback_data: id,
    ...extra,
    type,
    [type]: object,
  };
}

const contact = {
  name: { formatted_name: "Barbara J. Johnson", first_name: "Barbara", last_name: "Johnson", prefix: "Dr." },
  phones: [{ phone: "+1 (940) 555-1234", type: "WORK", wa_id: "19405551234" }],
  emails: [{ email: "bjohnson@example.com", type: "WORK" }],
  urls: [{ url: "https://www.example.com", type: "WORK" }],
  addresses: [{ street: "1 Hacker Way", city: "Menlo Park", state: "CA", zip: "94025", country_code: "US" }],
  org: { company: "Lucky Shrub", department: "Legal", title: "Lead Counsel" },
  birthday: "1999-01-23",
};

/** One message of each type (and the richer variants), as a client sends it; Meta receives the same object. */
const EXAMPLES: Array<[string, string, unknown]> = [
  ["text with a link preview", "text", { body: "See https://example.com", preview_url: true }],
  [
    "image by link with a caption",
    "image",
    { link: "https://cdn.example.com/a.jpg", caption: "Your receipt" },
  ],
  ["image by uploaded id", "image", { id: "1037543291543636" }],
  ["video", "video", { link: "https://cdn.example.com/a.mp4", caption: "How to" }],
  ["audio", "audio", { id: "1013859600285441" }],
  [
    "document with a file name",
    "document",
    { link: "https://cdn.example.com/i.pdf", filename: "invoice.pdf" },
  ],
  ["sticker", "sticker", { id: "798882015472548" }],
  [
    "location",
    "location",
    {
      latitude: 37.44216251868683,
      longitude: -122.16153582049394,
      name: "Philz Coffee",
      address: "101 Forest Ave",
    },
  ],
  ["contacts", "contacts", [contact]],
  [
    "reply buttons with an image header",
    "interactive",
    {
      type: "button",
      header: { type: "image", image: { link: "https://cdn.example.com/h.png" } },
      body: { text: "Reschedule?" },
      footer: { text: "Lucky Shrub" },
      action: {
        buttons: [
          { type: "reply", reply: { id: "change-button", title: "Change" } },
          { type: "reply", reply: { id: "cancel-button", title: "Cancel" } },
        ],
      },
    },
  ],
  [
    "a list of two sections",
    "interactive",
    {
      type: "list",
      header: { type: "text", text: "Choose a slot" },
      body: { text: "Which time suits you?" },
      action: {
        button: "Times",
        sections: [
          { title: "Morning", rows: [{ id: "m9", title: "9:00", description: "Before the rush" }] },
          {
            title: "Afternoon",
            rows: [
              { id: "a2", title: "14:00" },
              { id: "a4", title: "16:00" },
            ],
          },
        ],
      },
    },
  ],
  [
    "a call-to-action URL",
    "interactive",
    {
      type: "cta_url",
      body: { text: "Tap to see available dates." },
      action: {
        name: "cta_url",
        parameters: { display_text: "See Dates", url: "https://example.com/dates" },
      },
    },
  ],
];

describe("every outbound type reaches Meta in Meta's shape", () => {
  it.each(EXAMPLES)("%s", async (_name, type, object) => {
    const response = await send({ type, to: "+14155550123", [type]: object });
    expect(response.status).toBe(202);
    const status = await settled(response.json.id);
    expect(status).toMatchObject({ status: "sent", type });
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]?.invalid).toBeUndefined();
    expect(fake.requests[0]?.body).toEqual(metaBody(response.json.id, type, object));
  });

  it("a template with media, location, body and button parameters; Meta's { code } language taken too", async () => {
    const components = [
      {
        type: "header",
        parameters: [{ type: "document", document: { id: "4490", filename: "ticket.pdf" } }],
      },
      {
        type: "body",
        parameters: [
          { type: "text", text: "Ana" },
          { type: "currency", currency: { fallback_value: "$10.99", code: "USD", amount_1000: 10990 } },
          { type: "date_time", date_time: { fallback_value: "May 1" } },
        ],
      },
      {
        type: "button",
        sub_type: "quick_reply",
        index: 0,
        parameters: [{ type: "payload", payload: "STOP" }],
      },
      { type: "button", sub_type: "url", index: 1, parameters: [{ type: "text", text: "order/42" }] },
      {
        type: "button",
        sub_type: "copy_code",
        index: 2,
        parameters: [{ type: "coupon_code", coupon_code: "SAVE10" }],
      },
    ];
    const located = [
      {
        type: "header",
        parameters: [
          { type: "location", location: { latitude: 1.5, longitude: 2.5, name: "Shop", address: "Here" } },
        ],
      },
    ];
    for (const [language, parts] of [
      ["en_US", components],
      [{ code: "pt_BR" }, located],
    ] as const) {
      fake.requests.length = 0;
      const response = await send({
        type: "template",
        to: "+14155550123",
        template: { name: "ticket_ready", language, components: parts },
      });
      expect(response.status).toBe(202);
      expect((await settled(response.json.id)).status).toBe("sent");
      const code = typeof language === "string" ? language : language.code;
      expect(fake.requests[0]?.body).toEqual(
        metaBody(response.json.id, "template", {
          name: "ticket_ready",
          language: { code },
          components: parts,
        }),
      );
    }
  });

  it("a reply quoting Meta's id of an inbound message carries it as context", async () => {
    const wamid = "wamid.HBgLMTQxNTU1NTAxMjMVAgASGBQzQUZCRDZCNjA2QTI5RjU0MzFEQQA=";
    const response = await send({
      type: "text",
      to: "+14155550123",
      context: { message_id: wamid },
      text: { body: "Yes, it ships today" },
    });
    expect(response.status).toBe(202);
    await settled(response.json.id);
    expect(fake.requests[0]?.body).toEqual(
      metaBody(
        response.json.id,
        "text",
        { body: "Yes, it ships today", preview_url: false },
        { context: { message_id: wamid } },
      ),
    );
  });

  it("the fake refuses what Meta would refuse (the judge can fail)", () => {
    const ok = metaBody("x", "image", { link: "https://a.example/x.jpg" });
    expect(invalidMessageBody(ok)).toBeUndefined();
    expect(invalidMessageBody(metaBody("x", "image", { link: "https://a/x.jpg", id: "1" }))).toMatch(
      /^image/,
    );
    expect(invalidMessageBody(metaBody("x", "audio", { id: "1", caption: "no" }))).toMatch(/^audio\.caption/);
    expect(
      invalidMessageBody(
        metaBody("x", "interactive", {
          type: "button",
          body: { text: "b" },
          action: { buttons: [{ type: "reply", reply: { id: "1", title: "x".repeat(21) } }] },
        }),
      ),
    ).toMatch(/reply\.title/);
    expect(invalidMessageBody({ ...ok, text: { body: "both" } })).toMatch(/^text/);
  });
});

describe("our message ids in context and reaction, mapped to Meta's", () => {
  it("maps a sent message's id to its wamid, in a reaction and in a quoted reply", async () => {
    const first = await send({ type: "text", to: "+14155550123", text: { body: "Order 42 shipped" } });
    const sent = await settled(first.json.id);
    const reaction = await send({
      type: "reaction",
      to: "+14155550123",
      reaction: { message_id: first.json.id, emoji: "👍" },
    });
    expect(reaction.status).toBe(202);
    await settled(reaction.json.id);
    const quoted = await send({
      type: "location",
      to: "+14155550123",
      context: { message_id: first.json.id },
      location: { latitude: 1, longitude: 2 },
    });
    await settled(quoted.json.id);
    expect(fake.requests.map((r) => r.body)).toEqual([
      metaBody(first.json.id, "text", { body: "Order 42 shipped", preview_url: false }),
      metaBody(reaction.json.id, "reaction", { message_id: sent.provider_message_id, emoji: "👍" }),
      metaBody(
        quoted.json.id,
        "location",
        { latitude: 1, longitude: 2 },
        {
          context: { message_id: sent.provider_message_id },
        },
      ),
    ]);
    const view = (await gw.request("GET", `/v1/messages/${reaction.json.id}`, { token })).json;
    expect(view.type).toBe("reaction");
  });

  it("holds a reply to a message not sent yet until it is, then sends it with the wamid", async () => {
    // The first send is in flight for a while, then meets a throughput refusal and is retried: the reaction,
    // queued meanwhile, must wait for it.
    fake.script({ ...graphError(130429, 400), delayMs: 300 });
    const first = await send({ type: "text", to: "+14155550123", text: { body: "Your code is ready" } });
    const reaction = await send({
      type: "reaction",
      to: "+14155550123",
      reaction: { message_id: first.json.id, emoji: "❤️" },
    });
    expect(reaction.status).toBe(202);
    const sentReaction = await settled(reaction.json.id);
    const sentFirst = await settled(first.json.id);
    expect(sentReaction.status).toBe("sent");
    expect(sentReaction.attempts).toBeGreaterThan(1);
    const accepted = fake.requests.filter((r) => r.wamid !== undefined).map((r) => r.body);
    expect(accepted).toEqual([
      metaBody(first.json.id, "text", { body: "Your code is ready", preview_url: false }),
      metaBody(reaction.json.id, "reaction", { message_id: sentFirst.provider_message_id, emoji: "❤️" }),
    ]);
    // Nothing ever went to Meta with our own id in it.
    expect(JSON.stringify(fake.requests.map((r) => r.body))).not.toContain(`"message_id":"${first.json.id}"`);
  });

  it("refuses with 422 naming the field: an unknown id, another subject's, a failed one; nothing is queued", async () => {
    const unknown = await send({
      type: "reaction",
      to: "+14155550123",
      reaction: { message_id: "01890a5d-ac96-774b-bcce-b302099a8057", emoji: "👍" },
    });
    expect(unknown.status).toBe(422);
    expect(unknown.json.error.code).toBe("unknown_message");
    expect(unknown.json.error.message).toMatch(/^reaction\.message_id:/);

    const mine = await send({ type: "text", to: "+14155550123", text: { body: "mine" } });
    await settled(mine.json.id);
    const other = await gw.token(["messages:send"], { sub: "another-tenant" });
    const foreign = await send(
      { type: "text", to: "+14155550123", context: { message_id: mine.json.id }, text: { body: "hi" } },
      other,
    );
    expect(foreign.status).toBe(422);
    expect(foreign.json.error.code).toBe("unknown_message");
    expect(foreign.json.error.message).toMatch(/^context\.message_id:/);

    fake.script(graphError(131026));
    const failed = await send({ type: "text", to: "+14155550123", text: { body: "undeliverable" } });
    expect((await settled(failed.json.id)).status).toBe("failed");
    const toFailed = await send({
      type: "reaction",
      to: "+14155550123",
      reaction: { message_id: failed.json.id, emoji: "😢" },
    });
    expect(toFailed.status).toBe(422);
    expect(toFailed.json.error.code).toBe("message_failed");

    await new Promise((r) => setTimeout(r, 200));
    // Only the two plain texts went out.
    expect(fake.requests).toHaveLength(2);
  });
  it("refuses a reply from one number quoting our message sent from another (Meta would not find it)", async () => {
    const admin = await gw.token(["admin"]);
    const created = await gw.request("POST", "/v1/numbers", {
      token: admin,
      body: {
        name: "billing",
        transport: "cloud",
        cloud: {
          phone_number_id: "106540352242999",
          access_token: "test-access-token",
          waba_id: "300000000000009",
        },
      },
    });
    expect(created.status).toBe(201);
    const fromDefault = await send({ type: "text", to: "+14155550123", text: { body: "from the default" } });
    await settled(fromDefault.json.id);
    const crossed = await send({
      type: "text",
      from: created.json.id,
      to: "+14155550123",
      context: { message_id: fromDefault.json.id },
      text: { body: "quoting across numbers" },
    });
    expect(crossed.status).toBe(422);
    expect(crossed.json.error).toMatchObject({ code: "message_of_another_number" });
    expect(crossed.json.error.message).toMatch(/^context\.message_id:/);
  });
});
