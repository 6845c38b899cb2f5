import type { FastifyBaseLogger } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTemplateCatalog } from "../src/templates/catalog.js";
import { type RequestedTemplate, templateMismatch } from "../src/templates/fit.js";
import { graphTemplate } from "../src/templates/graph-templates.js";
import { type FakeGraph, type FakeTemplate, startFakeGraph } from "./support/fake-graph.js";
import { eventually, startTestGateway, type TestGateway } from "./support/gateway.js";

// Templates as Meta's GET /{waba-id}/message_templates lists them (fields name, language, status, category,
// components), and sends checked against them before anything is queued.

const WABA = "102290129340398";
const OTHER_WABA = "109876543210987";
const PHONE = "+14155550123";

const ORDER_UPDATE: FakeTemplate = {
  name: "order_update",
  language: "en_US",
  status: "APPROVED",
  category: "UTILITY",
  components: [
    { type: "HEADER", format: "TEXT", text: "Order {{1}}" },
    {
      type: "BODY",
      text: "Hi {{1}}, your order {{2}} has shipped.",
      example: { body_text: [["Ann", "42"]] },
    },
    { type: "FOOTER", text: "Reply STOP to opt out" },
    {
      type: "BUTTONS",
      buttons: [
        { type: "URL", text: "Track", url: "https://shop.example/track/{{1}}" },
        { type: "QUICK_REPLY", text: "Stop" },
      ],
    },
  ],
};
const ORDER_UPDATE_ES: FakeTemplate = { ...ORDER_UPDATE, language: "es" };
const SPRING_SALE: FakeTemplate = {
  name: "spring_sale",
  language: "en_US",
  status: "APPROVED",
  category: "MARKETING",
  components: [
    { type: "HEADER", format: "IMAGE", example: { header_handle: ["4::aW1hZ2U="] } },
    { type: "BODY", text: "Use code {{1}} before Sunday" },
    { type: "BUTTONS", buttons: [{ type: "COPY_CODE", example: "SPRING25" }] },
  ],
};
const OLD_PROMO: FakeTemplate = {
  name: "old_promo",
  language: "en_US",
  status: "PAUSED",
  category: "MARKETING",
  components: [{ type: "BODY", text: "Hello" }],
};
const OTP_CODE: FakeTemplate = {
  name: "otp_code",
  language: "en_US",
  status: "APPROVED",
  category: "AUTHENTICATION",
  components: [
    { type: "BODY", text: "*{{1}}* is your verification code. For your security, do not share this code." },
    { type: "FOOTER", text: "This code expires in 5 minutes." },
    { type: "BUTTONS", buttons: [{ type: "OTP", otp_type: "COPY_CODE", text: "Copy code" }] },
  ],
};
/** Enough others to need three pages of 100. */
const FILLERS: FakeTemplate[] = Array.from({ length: 226 }, (_, i) => ({
  name: `filler_${i}`,
  language: "en_US",
  status: i % 2 === 0 ? "APPROVED" : "REJECTED",
  category: "UTILITY",
  components: [{ type: "BODY", text: "Nothing to fill" }],
}));

/** A send's template with its parameters' values (the check itself only reads their types). */
interface SendTemplate extends RequestedTemplate {
  components?: Array<{
    type: string;
    sub_type?: string;
    index?: number;
    parameters: Array<{ type: string; [value: string]: unknown }>;
  }>;
}

const orderUpdate = (overrides: Partial<SendTemplate> = {}): SendTemplate => ({
  name: "order_update",
  language: "en_US",
  components: [
    { type: "header", parameters: [{ type: "text", text: "42" }] },
    {
      type: "body",
      parameters: [
        { type: "text", text: "Ann" },
        { type: "text", text: "42" },
      ],
    },
    { type: "button", sub_type: "url", index: 0, parameters: [{ type: "text", text: "42" }] },
  ],
  ...overrides,
});

describe("templateMismatch (Meta's parameter rules, component by component)", () => {
  const approved = (t: FakeTemplate) => graphTemplate.parse(t);
  const cases: Array<[string, FakeTemplate, RequestedTemplate, string | undefined]> = [
    ["a send that fits", ORDER_UPDATE, orderUpdate(), undefined],
    [
      "a body parameter short",
      ORDER_UPDATE,
      orderUpdate({
        components: [
          { type: "header", parameters: [{ type: "text" }] },
          { type: "body", parameters: [{ type: "text" }] },
          { type: "button", sub_type: "url", index: 0, parameters: [{ type: "text" }] },
        ],
      }),
      "body expects 2 parameters ({{1}}, {{2}}), got 1",
    ],
    [
      "the header's parameter missing",
      ORDER_UPDATE,
      orderUpdate({
        components: [
          { type: "body", parameters: [{ type: "text" }, { type: "text" }] },
          { type: "button", sub_type: "url", index: 0, parameters: [{ type: "text" }] },
        ],
      }),
      "header expects 1 parameter ({{1}}), got none",
    ],
    [
      "the dynamic url button left out",
      ORDER_UPDATE,
      orderUpdate({
        components: [
          { type: "header", parameters: [{ type: "text" }] },
          { type: "body", parameters: [{ type: "text" }, { type: "text" }] },
        ],
      }),
      "button 0 (url) expects 1 parameter, got none",
    ],
    [
      "a button with the wrong sub_type",
      ORDER_UPDATE,
      orderUpdate({
        components: [
          { type: "header", parameters: [{ type: "text" }] },
          { type: "body", parameters: [{ type: "text" }, { type: "text" }] },
          { type: "button", sub_type: "quick_reply", index: 0, parameters: [{ type: "payload" }] },
        ],
      }),
      "button 0 is a url button: send sub_type url",
    ],
    [
      "a button index past the template's buttons",
      ORDER_UPDATE,
      orderUpdate({
        components: [
          { type: "header", parameters: [{ type: "text" }] },
          { type: "body", parameters: [{ type: "text" }, { type: "text" }] },
          { type: "button", sub_type: "url", index: 0, parameters: [{ type: "text" }] },
          { type: "button", sub_type: "quick_reply", index: 2, parameters: [{ type: "payload" }] },
        ],
      }),
      "button 2: the template has 2 buttons",
    ],
    [
      "the optional quick-reply payload given",
      ORDER_UPDATE,
      orderUpdate({
        components: [
          { type: "header", parameters: [{ type: "text" }] },
          { type: "body", parameters: [{ type: "text" }, { type: "text" }] },
          { type: "button", sub_type: "url", index: 0, parameters: [{ type: "text" }] },
          { type: "button", sub_type: "quick_reply", index: 1, parameters: [{ type: "payload" }] },
        ],
      }),
      undefined,
    ],
    [
      "an image header without its image",
      SPRING_SALE,
      {
        name: "spring_sale",
        language: "en_US",
        components: [
          { type: "body", parameters: [{ type: "text" }] },
          { type: "button", sub_type: "copy_code", index: 0, parameters: [{ type: "coupon_code" }] },
        ],
      },
      "header expects 1 parameter (image), got none",
    ],
    [
      "an image header given a document",
      SPRING_SALE,
      {
        name: "spring_sale",
        language: "en_US",
        components: [
          { type: "header", parameters: [{ type: "document" }] },
          { type: "body", parameters: [{ type: "text" }] },
          { type: "button", sub_type: "copy_code", index: 0, parameters: [{ type: "coupon_code" }] },
        ],
      },
      "header expects a parameter of type image, got document",
    ],
    [
      "an image header with its image and the coupon code",
      SPRING_SALE,
      {
        name: "spring_sale",
        language: "en_US",
        components: [
          { type: "header", parameters: [{ type: "image" }] },
          { type: "body", parameters: [{ type: "text" }] },
          { type: "button", sub_type: "copy_code", index: 0, parameters: [{ type: "coupon_code" }] },
        ],
      },
      undefined,
    ],
    [
      "a copy-code button given text",
      SPRING_SALE,
      {
        name: "spring_sale",
        language: "en_US",
        components: [
          { type: "header", parameters: [{ type: "image" }] },
          { type: "body", parameters: [{ type: "text" }] },
          { type: "button", sub_type: "copy_code", index: 0, parameters: [{ type: "text" }] },
        ],
      },
      "button 0 (copy_code) expects a parameter of type coupon_code, got text",
    ],
    [
      "parameters for a body without placeholders",
      OLD_PROMO,
      {
        name: "old_promo",
        language: "en_US",
        components: [{ type: "body", parameters: [{ type: "text" }] }],
      },
      "body expects 0 parameters, got 1",
    ],
    [
      "a header for a template without one",
      OLD_PROMO,
      { name: "old_promo", language: "en_US", components: [{ type: "header", parameters: [] }] },
      "header: the template has no header",
    ],
    [
      "the authentication template as POST /v1/otp sends it",
      OTP_CODE,
      {
        name: "otp_code",
        language: "en_US",
        components: [
          { type: "body", parameters: [{ type: "text" }] },
          { type: "button", sub_type: "url", index: 0, parameters: [{ type: "text" }] },
        ],
      },
      undefined,
    ],
  ];
  it.each(cases)("%s", (_what, template, requested, expected) => {
    expect(templateMismatch(approved(template), requested)).toBe(expected);
  });
});

describe("GET /v1/templates and template sends on the cloud transport", () => {
  let fake: FakeGraph;
  let gw: TestGateway;
  let send: string;

  beforeAll(async () => {
    fake = await startFakeGraph({ accessToken: "default-access-token-0000" });
    fake.setTemplates(WABA, [ORDER_UPDATE, ...FILLERS, ORDER_UPDATE_ES, SPRING_SALE, OLD_PROMO, OTP_CODE]);
    fake.setTemplates(OTHER_WABA, [{ ...OLD_PROMO, name: "support_hello", status: "APPROVED" }]);
    gw = await startTestGateway({
      WHATSAPP_TRANSPORT: "cloud",
      GRAPH_API_BASE_URL: fake.baseUrl,
      WHATSAPP_ACCESS_TOKEN: "default-access-token-0000",
      WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
      WHATSAPP_WABA_ID: WABA,
    });
    send = await gw.token(["messages:send", "messages:read", "broadcasts", "otp"]);
  });
  afterAll(async () => {
    await gw?.stop();
    await fake?.close();
  });

  it("lists the number's approved templates, read page by page with the number's token", async () => {
    const answer = await gw.request("GET", "/v1/templates", { token: send });
    expect(answer.status).toBe(200);
    expect(answer.json.number).toBe("default");
    expect(Date.parse(answer.json.fetched_at)).not.toBeNaN();
    const names = answer.json.templates.map(
      (t: { name: string; language: string }) => `${t.name}/${t.language}`,
    );
    expect(names).toContain("order_update/en_US");
    expect(names).toContain("order_update/es");
    expect(names).toContain("otp_code/en_US");
    expect(names).not.toContain("old_promo/en_US");
    expect(names).not.toContain("filler_1/en_US");
    expect(names).toHaveLength(4 + FILLERS.length / 2);
    expect(answer.json.templates.find((t: { name: string }) => t.name === "spring_sale")).toEqual({
      name: "spring_sale",
      language: "en_US",
      status: "APPROVED",
      category: "MARKETING",
      components: SPRING_SALE.components,
    });
    // 231 templates, 100 a page: three pages, each after the previous page's cursor, the token on each.
    const pages = fake.templateRequests();
    expect(pages.length).toBeGreaterThanOrEqual(3);
    const lastRead = pages.slice(-3);
    expect(lastRead.map((r) => (r.body as Record<string, string>).after === undefined)).toEqual([
      true,
      false,
      false,
    ]);
    for (const r of lastRead) {
      expect(r.path).toBe(`/v21.0/${WABA}/message_templates`);
      expect(r.headers.authorization).toBe("Bearer default-access-token-0000");
      expect((r.body as Record<string, string>).fields).toBe("name,language,status,category,components");
    }
  });

  it("is answered from the copy while it is fresh (no Graph API call per request)", async () => {
    await gw.request("GET", "/v1/templates", { token: send });
    const before = fake.templateRequests().length;
    const again = await gw.request("GET", "/v1/templates", { token: send });
    expect(again.status).toBe(200);
    expect(fake.templateRequests().length).toBe(before);
  });

  it("needs messages:send and names an unknown number", async () => {
    expect((await gw.request("GET", "/v1/templates")).status).toBe(401);
    const reader = await gw.token(["messages:read"]);
    expect((await gw.request("GET", "/v1/templates", { token: reader })).status).toBe(403);
    const unknown = await gw.request("GET", "/v1/templates?number=nope", { token: send });
    expect(unknown.status).toBe(422);
    expect(unknown.json.error).toEqual({ code: "unknown_number", message: "number: no such number" });
    const extra = await gw.request("GET", "/v1/templates?status=PAUSED", { token: send });
    expect(extra.status).toBe(400);
  });

  it("refuses template sends that do not fit with a 422 naming the component, and queues nothing of them", async () => {
    await gw.request("GET", "/v1/templates", { token: send });
    const post = (template: unknown) =>
      gw.request("POST", "/v1/messages", { token: send, body: { type: "template", to: PHONE, template } });

    const short = await post(
      orderUpdate({
        components: [
          { type: "header", parameters: [{ type: "text", text: "42" }] },
          { type: "body", parameters: [{ type: "text", text: "Ann" }] },
          { type: "button", sub_type: "url", index: 0, parameters: [{ type: "text", text: "42" }] },
        ],
      }),
    );
    expect(short.status).toBe(422);
    expect(short.json.error).toEqual({
      code: "template_mismatch",
      message:
        "template.components: body expects 2 parameters ({{1}}, {{2}}), got 1 (template order_update, en_US)",
    });

    const unknown = await post({ name: "order_updated", language: "en_US" });
    expect(unknown.status).toBe(422);
    expect(unknown.json.error.code).toBe("template_not_found");
    expect(unknown.json.error.message).toMatch(/^template\.name: .*order_updated/);

    const language = await post(orderUpdate({ language: "pt_BR" }));
    expect(language.status).toBe(422);
    expect(language.json.error).toEqual({
      code: "template_not_found",
      message: "template.language: template order_update has no pt_BR translation (it has en_US, es)",
    });

    const paused = await post({ name: "old_promo", language: "en_US" });
    expect(paused.status).toBe(422);
    expect(paused.json.error).toEqual({
      code: "template_not_approved",
      message: "template: template old_promo (en_US) is PAUSED, not APPROVED",
    });

    const noImage = await post({
      name: "spring_sale",
      language: "en_US",
      components: [
        { type: "body", parameters: [{ type: "text", text: "SPRING25" }] },
        {
          type: "button",
          sub_type: "copy_code",
          index: 0,
          parameters: [{ type: "coupon_code", coupon_code: "SPRING25" }],
        },
      ],
    });
    expect(noImage.status).toBe(422);
    expect(noImage.json.error.message).toMatch(/^template\.components: header expects 1 parameter \(image\)/);

    // What fits goes out; the refused ones never reached the outbox (they would have been sent first).
    const fits = await post(orderUpdate());
    expect(fits.status).toBe(202);
    const spanish = await post(orderUpdate({ language: "es" }));
    expect(spanish.status).toBe(202);
    await eventually(async () => (fake.accepted().length >= 2 ? true : undefined));
    expect(fake.accepted().map((b) => (b.template as { language: { code: string } }).language.code)).toEqual([
      "en_US",
      "es",
    ]);
  });

  it("checks a broadcast's template with each recipient's parameters", async () => {
    const base = {
      template: {
        name: "order_update",
        language: "en_US",
        components: orderUpdate().components,
      },
    };
    const wrong = await gw.request("POST", "/v1/broadcasts", {
      token: send,
      body: {
        ...base,
        recipients: [
          PHONE,
          { to: "+14155550124", parameters: ["Ann", "42"] },
          { to: "+14155550125", parameters: ["Bob"] },
        ],
      },
    });
    expect(wrong.status).toBe(422);
    expect(wrong.json.error).toEqual({
      code: "template_mismatch",
      message:
        "recipients[2].parameters: body expects 2 parameters ({{1}}, {{2}}), got 1 (template order_update, en_US)",
    });
    const paused = await gw.request("POST", "/v1/broadcasts", {
      token: send,
      body: { template: { name: "old_promo", language: "en_US" }, recipients: [PHONE] },
    });
    expect(paused.status).toBe(422);
    expect(paused.json.error.code).toBe("template_not_approved");
    const fits = await gw.request("POST", "/v1/broadcasts", {
      token: send,
      body: { ...base, recipients: [PHONE, { to: "+14155550124", parameters: ["Ann", "42"] }] },
    });
    expect(fits.status).toBe(202);
  });

  it("checks the OTP's authentication template", async () => {
    const issued = await gw.request("POST", "/v1/otp", { token: send, body: { to: "+14155550199" } });
    expect(issued.status).toBe(202);
    // The template loses its button in Meta's account: the next code is refused before anything is stored.
    fake.setTemplates(WABA, [
      ORDER_UPDATE,
      { ...OTP_CODE, components: OTP_CODE.components.filter((c) => c.type !== "BUTTONS") },
    ]);
    const fresh = await startTestGateway({
      WHATSAPP_TRANSPORT: "cloud",
      GRAPH_API_BASE_URL: fake.baseUrl,
      WHATSAPP_ACCESS_TOKEN: "default-access-token-0000",
      WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
      WHATSAPP_WABA_ID: WABA,
    });
    try {
      const token = await fresh.token(["otp", "messages:send"]);
      expect((await fresh.request("GET", "/v1/templates", { token })).status).toBe(200);
      const refused = await fresh.request("POST", "/v1/otp", { token, body: { to: "+14155550198" } });
      expect(refused.status).toBe(422);
      expect(refused.json.error).toEqual({
        code: "template_mismatch",
        message:
          "OTP_TEMPLATE_NAME.components: button: the template has no buttons (template otp_code, en_US)",
      });
    } finally {
      await fresh.stop();
      fake.setTemplates(WABA, [ORDER_UPDATE, ...FILLERS, ORDER_UPDATE_ES, SPRING_SALE, OLD_PROMO, OTP_CODE]);
    }
  });

  it("checks a registered cloud number against its own WABA", async () => {
    const admin = await gw.token(["admin"]);
    const created = await gw.request("POST", "/v1/numbers", {
      token: admin,
      body: {
        name: "support",
        transport: "cloud",
        cloud: {
          phone_number_id: "106540352240000",
          access_token: "default-access-token-0000",
          waba_id: OTHER_WABA,
        },
      },
    });
    expect(created.status).toBe(201);
    const id = created.json.id as string;
    const listed = await gw.request("GET", `/v1/templates?number=${id}`, { token: send });
    expect(listed.status).toBe(200);
    expect(listed.json.templates.map((t: { name: string }) => t.name)).toEqual(["support_hello"]);
    const refused = await gw.request("POST", "/v1/messages", {
      token: send,
      body: { type: "template", from: id, to: PHONE, template: orderUpdate() },
    });
    expect(refused.status).toBe(422);
    expect(refused.json.error.code).toBe("template_not_found");
    const fits = await gw.request("POST", "/v1/messages", {
      token: send,
      body: { type: "template", from: id, to: PHONE, template: { name: "support_hello", language: "en_US" } },
    });
    expect(fits.status).toBe(202);
  });
});

describe("when templates cannot be read", () => {
  it("sends unchecked (Meta judges) and GET /v1/templates says why", async () => {
    const fake = await startFakeGraph({ accessToken: "default-access-token-0000" });
    fake.failTemplates({ status: 403, body: { error: { message: "(#200) Permissions error", code: 200 } } });
    const gw = await startTestGateway({
      WHATSAPP_TRANSPORT: "cloud",
      GRAPH_API_BASE_URL: fake.baseUrl,
      WHATSAPP_ACCESS_TOKEN: "default-access-token-0000",
      WHATSAPP_PHONE_NUMBER_ID: "106540352242922",
      WHATSAPP_WABA_ID: WABA,
    });
    try {
      const token = await gw.token(["messages:send"]);
      const listed = await gw.request("GET", "/v1/templates", { token });
      expect(listed.status).toBe(502);
      expect(listed.json.error).toEqual({
        code: "templates_unavailable",
        message:
          "the number's templates could not be read: the Graph API refused to list templates (HTTP 403, error 200)",
      });
      expect(gw.logs()).not.toContain("default-access-token-0000");
      const sent = await gw.request("POST", "/v1/messages", {
        token,
        body: { type: "template", to: PHONE, template: { name: "anything", language: "en_US" } },
      });
      expect(sent.status).toBe(202);
    } finally {
      await gw.stop();
      await fake.close();
    }
  });

  it("without a WABA id: sends unchecked and GET /v1/templates is a 422 naming the setting", async () => {
    const gw = await startTestGateway();
    try {
      const token = await gw.token(["messages:send"]);
      const listed = await gw.request("GET", "/v1/templates", { token });
      expect(listed.status).toBe(422);
      expect(listed.json.error.code).toBe("templates_unavailable");
      const sent = await gw.request("POST", "/v1/messages", {
        token,
        body: { type: "template", to: PHONE, template: { name: "anything", language: "en_US" } },
      });
      expect(sent.status).toBe(202);
    } finally {
      await gw.stop();
    }
  });
});

describe("the template catalog's copy over time", () => {
  const silent = { warn: () => {} } as unknown as FastifyBaseLogger;

  it("re-reads a stale copy before refusing, refreshes in the background after the TTL, and never waits on a fit", async () => {
    const fake = await startFakeGraph({ accessToken: "tok-0123456789abcdef" });
    fake.setTemplates(WABA, [ORDER_UPDATE]);
    let clock = 1_000_000;
    const catalog = createTemplateCatalog({
      sources: () => ({
        kind: "source",
        version: "v1",
        open: () => ({ baseUrl: fake.baseUrl, wabaId: WABA, accessToken: "tok-0123456789abcdef" }),
      }),
      ttlMs: 300_000,
      log: silent,
      now: () => clock,
    });
    try {
      // Nothing read yet: unchecked, and a fetch starts.
      expect(catalog.check(undefined, { name: "brand_new", language: "en_US" })).toBeUndefined();
      await eventually(async () => (fake.templateRequests().length === 1 ? true : undefined));
      await catalog.list(undefined);
      // A fit is answered in memory (no promise), a miss on a fresh copy is refused at once.
      expect(catalog.check(undefined, orderUpdate())).toBeUndefined();
      expect(() => catalog.check(undefined, { name: "brand_new", language: "en_US" })).toThrow(/brand_new/);
      expect(fake.templateRequests()).toHaveLength(1);
      // Approved meanwhile at Meta; a minute later the copy is re-read before a refusal, and the send fits.
      fake.setTemplates(WABA, [ORDER_UPDATE, { ...OLD_PROMO, name: "brand_new", status: "APPROVED" }]);
      clock += 60_000;
      const pending = catalog.check(undefined, { name: "brand_new", language: "en_US" });
      expect(pending).toBeInstanceOf(Promise);
      await expect(pending).resolves.toBeUndefined();
      expect(fake.templateRequests()).toHaveLength(2);
      // Past the TTL a fitting send is still answered at once, and the copy is re-read behind it.
      clock += 300_000;
      expect(catalog.check(undefined, orderUpdate())).toBeUndefined();
      await eventually(async () => (fake.templateRequests().length === 3 ? true : undefined));
      // Graph API down and the copy old: a send the copy would refuse goes out unchecked.
      await catalog.list(undefined);
      fake.failTemplates({ status: 500, body: { error: { message: "down", code: 2 } } });
      clock += 60_000;
      await expect(
        catalog.check(undefined, { name: "gone_now", language: "en_US" }),
      ).resolves.toBeUndefined();
    } finally {
      catalog.close();
      await fake.close();
    }
  });
});
