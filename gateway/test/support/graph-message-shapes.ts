// The fake Graph API's judge of a `POST /{phone-number-id}/messages` body, per message type, written from Meta's
// documentation (Messages API reference and the per-type guides) independently of the gateway's own schemas: a
// body Meta would refuse is answered with Meta's error #100, naming the parameter, so a test sees the refusal the
// way production would. Returns undefined for a body Meta accepts.

type Json = Record<string, unknown>;

class Invalid extends Error {}

function fail(path: string, why: string): never {
  throw new Invalid(`${path}: ${why}`);
}

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const length = (s: string) => [...s].length;

function object(v: unknown, path: string, allowed: readonly string[]): Json {
  if (!isObject(v)) fail(path, "must be an object");
  for (const key of Object.keys(v)) if (!allowed.includes(key)) fail(`${path}.${key}`, "is not a parameter");
  return v;
}

function text(v: unknown, path: string, max: number, required = true): void {
  if (v === undefined && !required) return;
  if (typeof v !== "string" || v.length === 0) fail(path, "must be a non-empty string");
  if (length(v) > max) fail(path, `must be at most ${max} characters`);
}

function array(v: unknown, path: string, min: number, max: number): unknown[] {
  if (!Array.isArray(v) || v.length < min || v.length > max)
    fail(path, `must be an array of ${min} to ${max}`);
  return v;
}

function media(v: unknown, path: string, extra: readonly string[]): void {
  const m = object(v, path, ["id", "link", ...extra]);
  if ((m.id === undefined) === (m.link === undefined)) fail(path, "requires either id or link");
  if (m.link !== undefined && !(typeof m.link === "string" && m.link.startsWith("https://")))
    fail(`${path}.link`, "must be an https URL");
  if (m.id !== undefined && typeof m.id !== "string") fail(`${path}.id`, "must be a string");
  text(m.caption, `${path}.caption`, 1024, false);
  text(m.filename, `${path}.filename`, 240, false);
}

function coordinate(v: unknown, path: string, bound: number): void {
  const n = typeof v === "string" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isFinite(n) || Math.abs(n) > bound)
    fail(path, "must be decimal degrees");
}

function location(v: unknown, path: string): void {
  const l = object(v, path, ["latitude", "longitude", "name", "address"]);
  coordinate(l.latitude, `${path}.latitude`, 90);
  coordinate(l.longitude, `${path}.longitude`, 180);
  text(l.name, `${path}.name`, 1000, false);
  text(l.address, `${path}.address`, 1000, false);
}

function contacts(v: unknown, path: string): void {
  array(v, path, 1, 257).forEach((c, i) => {
    const p = `${path}[${i}]`;
    const contact = object(c, p, ["name", "phones", "emails", "urls", "addresses", "org", "birthday"]);
    const name = object(contact.name, `${p}.name`, [
      "formatted_name",
      "first_name",
      "last_name",
      "middle_name",
      "suffix",
      "prefix",
    ]);
    text(name.formatted_name, `${p}.name.formatted_name`, 256);
    for (const [key, fields] of [
      ["phones", ["phone", "type", "wa_id"]],
      ["emails", ["email", "type"]],
      ["urls", ["url", "type"]],
      ["addresses", ["street", "city", "state", "zip", "country", "country_code", "type"]],
    ] as const) {
      if (contact[key] !== undefined)
        array(contact[key], `${p}.${key}`, 1, 20).forEach(
          (e, j) => void object(e, `${p}.${key}[${j}]`, fields),
        );
    }
    if (contact.org !== undefined) object(contact.org, `${p}.org`, ["company", "department", "title"]);
    if (contact.birthday !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(String(contact.birthday)))
      fail(`${p}.birthday`, "must be YYYY-MM-DD");
  });
}

function header(v: unknown, path: string, textOnly: boolean): void {
  const h = object(v, path, ["type", "text", "image", "video", "document"]);
  if (h.type === "text") {
    text(h.text, `${path}.text`, 60);
    return;
  }
  if (textOnly) fail(`${path}.type`, "must be text");
  if (h.type === "image" || h.type === "video") {
    media(h[h.type], `${path}.${h.type}`, []);
    return;
  }
  if (h.type === "document") {
    media(h.document, `${path}.document`, ["filename"]);
    return;
  }
  fail(`${path}.type`, "is not a header type");
}

function interactive(v: unknown, path: string): void {
  const i = object(v, path, ["type", "header", "body", "footer", "action"]);
  text(object(i.body, `${path}.body`, ["text"]).text, `${path}.body.text`, 1024);
  if (i.footer !== undefined)
    text(object(i.footer, `${path}.footer`, ["text"]).text, `${path}.footer.text`, 60);
  if (i.header !== undefined) header(i.header, `${path}.header`, i.type === "list");
  const a = `${path}.action`;
  if (i.type === "button") {
    const action = object(i.action, a, ["buttons"]);
    const titles = new Set<string>();
    array(action.buttons, `${a}.buttons`, 1, 3).forEach((b, n) => {
      const button = object(b, `${a}.buttons[${n}]`, ["type", "reply"]);
      if (button.type !== "reply") fail(`${a}.buttons[${n}].type`, "must be reply");
      const reply = object(button.reply, `${a}.buttons[${n}].reply`, ["id", "title"]);
      text(reply.id, `${a}.buttons[${n}].reply.id`, 256);
      text(reply.title, `${a}.buttons[${n}].reply.title`, 20);
      if (titles.has(String(reply.title))) fail(`${a}.buttons[${n}].reply.title`, "must be unique");
      titles.add(String(reply.title));
    });
    return;
  }
  if (i.type === "list") {
    const action = object(i.action, a, ["button", "sections"]);
    text(action.button, `${a}.button`, 20);
    const sections = array(action.sections, `${a}.sections`, 1, 10);
    let rows = 0;
    sections.forEach((s, n) => {
      const section = object(s, `${a}.sections[${n}]`, ["title", "rows"]);
      text(section.title, `${a}.sections[${n}].title`, 24, sections.length === 1);
      array(section.rows, `${a}.sections[${n}].rows`, 1, 10).forEach((r, m) => {
        const row = object(r, `${a}.sections[${n}].rows[${m}]`, ["id", "title", "description"]);
        text(row.id, `${a}.sections[${n}].rows[${m}].id`, 200);
        text(row.title, `${a}.sections[${n}].rows[${m}].title`, 24);
        text(row.description, `${a}.sections[${n}].rows[${m}].description`, 72, false);
        rows++;
      });
    });
    if (rows > 10) fail(`${a}.sections`, "at most 10 rows in all");
    return;
  }
  if (i.type === "cta_url") {
    const action = object(i.action, a, ["name", "parameters"]);
    if (action.name !== "cta_url") fail(`${a}.name`, "must be cta_url");
    const parameters = object(action.parameters, `${a}.parameters`, ["display_text", "url"]);
    text(parameters.display_text, `${a}.parameters.display_text`, 20);
    if (typeof parameters.url !== "string" || !parameters.url.startsWith("https://"))
      fail(`${a}.parameters.url`, "must be an https URL");
    return;
  }
  fail(`${path}.type`, "is not an interactive type this fake knows");
}

function parameter(v: unknown, path: string, component: string): void {
  const p = object(v, path, [
    "type",
    "text",
    "payload",
    "coupon_code",
    "image",
    "video",
    "document",
    "location",
    "currency",
    "date_time",
  ]);
  const allowed: Record<string, readonly string[]> = {
    header: ["text", "image", "video", "document", "location"],
    body: ["text", "currency", "date_time"],
    button: ["text", "payload", "coupon_code"],
  };
  if (!allowed[component]?.includes(String(p.type))) fail(`${path}.type`, `is not a ${component} parameter`);
  const type = String(p.type);
  if (Object.keys(p).some((k) => k !== "type" && k !== type)) fail(path, `carries fields other than ${type}`);
  if (type === "text") text(p.text, `${path}.text`, component === "header" ? 60 : 32768);
  else if (type === "payload" || type === "coupon_code") text(p[type], `${path}.${type}`, 256);
  else if (type === "image" || type === "video") media(p[type], `${path}.${type}`, []);
  else if (type === "document") media(p.document, `${path}.document`, ["filename"]);
  else if (type === "location") location(p.location, `${path}.location`);
  else if (!isObject(p[type])) fail(`${path}.${type}`, "must be an object");
}

function template(v: unknown, path: string): void {
  const t = object(v, path, ["name", "language", "components"]);
  text(t.name, `${path}.name`, 512);
  const language = object(t.language, `${path}.language`, ["code", "policy"]);
  text(language.code, `${path}.language.code`, 16);
  if (t.components === undefined) return;
  array(t.components, `${path}.components`, 0, 10).forEach((c, n) => {
    const cp = `${path}.components[${n}]`;
    const component = object(c, cp, ["type", "sub_type", "index", "parameters"]);
    if (!["header", "body", "button"].includes(String(component.type)))
      fail(`${cp}.type`, "is not a component");
    array(component.parameters, `${cp}.parameters`, 0, 100).forEach((p, m) => {
      parameter(p, `${cp}.parameters[${m}]`, String(component.type));
    });
  });
}

const TYPES = [
  "text",
  "template",
  "image",
  "video",
  "audio",
  "document",
  "sticker",
  "location",
  "contacts",
  "interactive",
  "reaction",
] as const;

function check(body: unknown): void {
  // A read receipt (`status: read`) goes to the same endpoint; it is not a message.
  if (isObject(body) && body.status !== undefined) {
    const r = object(body, "body", ["messaging_product", "status", "message_id", "typing_indicator"]);
    if (r.messaging_product !== "whatsapp") fail("messaging_product", "must be whatsapp");
    if (r.status !== "read") fail("status", "must be read");
    text(r.message_id, "message_id", 256);
    return;
  }
  const b = object(body, "body", [
    "messaging_product",
    "recipient_type",
    "to",
    "type",
    "context",
    "biz_opaque_callback_data",
    ...TYPES,
  ]);
  if (b.messaging_product !== "whatsapp") fail("messaging_product", "must be whatsapp");
  if (typeof b.to !== "string" || !/^[0-9]{6,20}$/.test(b.to)) fail("to", "must be a phone number");
  const type = String(b.type ?? "text");
  if (!(TYPES as readonly string[]).includes(type)) fail("type", "is not a message type");
  for (const other of TYPES)
    if (other !== type && b[other] !== undefined) fail(other, `given with type ${type}`);
  if (b.context !== undefined)
    text(object(b.context, "context", ["message_id"]).message_id, "context.message_id", 256);
  const value = b[type];
  switch (type) {
    case "text": {
      const t = object(value, "text", ["body", "preview_url"]);
      text(t.body, "text.body", 4096);
      if (t.preview_url !== undefined && typeof t.preview_url !== "boolean")
        fail("text.preview_url", "boolean");
      return;
    }
    case "template":
      template(value, "template");
      return;
    case "image":
    case "video":
      media(value, type, ["caption"]);
      return;
    case "document":
      media(value, type, ["caption", "filename"]);
      return;
    case "audio":
    case "sticker":
      media(value, type, []);
      return;
    case "location":
      location(value, "location");
      return;
    case "contacts":
      contacts(value, "contacts");
      return;
    case "interactive":
      interactive(value, "interactive");
      return;
    case "reaction": {
      const r = object(value, "reaction", ["message_id", "emoji"]);
      text(r.message_id, "reaction.message_id", 256);
      if (typeof r.emoji !== "string") fail("reaction.emoji", "must be a string");
      return;
    }
  }
}

/** Why Meta would refuse this message body; undefined when it would accept it. */
export function invalidMessageBody(body: unknown): string | undefined {
  try {
    check(body);
    return undefined;
  } catch (error) {
    if (error instanceof Invalid) return error.message;
    throw error;
  }
}
