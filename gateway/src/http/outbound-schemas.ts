import { z } from "zod";

// The outbound message object, in the shape of Meta's Cloud API (`POST /{phone-number-id}/messages`), so Meta's
// documentation applies word for word. Every limit Meta states is checked here, before anything is queued: a
// 400 naming the field instead of Meta's error #100 or #131009 after the message was accepted. Where Meta states
// no limit (a location's name, a contact's fields) a generous bound keeps a request from carrying megabytes.
// Objects are strict: a field Meta does not know is a 400, not something Meta would refuse later.

/** Meta counts characters, not UTF-16 code units: an emoji is one character. */
export function chars(max: number, min = 1) {
  return z
    .string()
    .min(min, { error: min === 1 ? "must not be empty" : `must be at least ${min} characters` })
    .refine((s) => s.length <= max || [...s].length <= max, { error: `must be at most ${max} characters` });
}

/** A link Meta fetches itself: https only (Meta refuses plain http), no credentials in it. */
export const httpsUrl = z
  .string()
  .max(2048, { error: "must be at most 2048 characters" })
  .refine(
    (s) => {
      if (!URL.canParse(s)) return false;
      const url = new URL(s);
      return url.protocol === "https:" && url.username === "" && url.password === "" && url.hostname !== "";
    },
    { error: "must be an https:// URL without credentials" },
  );

/** The id of an uploaded medium (POST /v1/media), as Meta's media ids are: digits, or an opaque token. */
const mediaId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._:-]+$/, { error: "must be a media id (POST /v1/media)" });

const LINK_OR_ID = "give either link (https) or id (POST /v1/media), not both";

/** A medium by `link` or by `id`, never both (Meta's rule), with the extra fields its type allows. */
function mediaObject<Extra extends z.ZodRawShape>(extra: Extra) {
  return z.strictObject({ id: mediaId.optional(), link: httpsUrl.optional(), ...extra }).refine(
    (m) => {
      const { id, link } = m as { id?: string; link?: string };
      return (id === undefined) !== (link === undefined);
    },
    { error: LINK_OR_ID },
  );
}

export const CAPTION_MAX = 1024;
const caption = chars(CAPTION_MAX).optional();
/** Meta states no limit on a document's file name; 240 keeps it a file name on every phone's file system. */
const filename = chars(240).optional();

export const imageObject = mediaObject({ caption });
export const videoObject = mediaObject({ caption });
export const documentObject = mediaObject({ caption, filename });
export const audioObject = mediaObject({});
export const stickerObject = mediaObject({});
/** Template headers carry media without a caption. */
const headerDocument = mediaObject({ filename });
const plainMedia = mediaObject({});

export const textObject = z.strictObject({
  body: chars(4096),
  preview_url: z.boolean().optional(),
});

/** Meta states no length for a location's name or address; 1,000 characters is far beyond any real one. */
export const locationObject = z.strictObject({
  latitude: z.number().min(-90).max(90),
  longitude: z.number().min(-180).max(180),
  name: chars(1000).optional(),
  address: chars(1000).optional(),
});

// Contacts: Meta's contact object. It states no lengths; 256 characters per field and 20 entries per list are
// generous bounds of our own. Up to 257 contacts per message (Meta).
const contactField = chars(256).optional();
const contactEntries = <T extends z.ZodType>(entry: T) => z.array(entry).min(1).max(20).optional();
const contactObject = z.strictObject({
  name: z.strictObject({
    formatted_name: chars(256),
    first_name: contactField,
    last_name: contactField,
    middle_name: contactField,
    suffix: contactField,
    prefix: contactField,
  }),
  phones: contactEntries(
    z.strictObject({
      phone: chars(64).optional(),
      type: contactField,
      wa_id: z
        .string()
        .regex(/^[0-9]{4,20}$/, { error: "must be a WhatsApp id (the number's digits)" })
        .optional(),
    }),
  ),
  emails: contactEntries(z.strictObject({ email: z.email().max(256).optional(), type: contactField })),
  urls: contactEntries(z.strictObject({ url: z.url().max(2048).optional(), type: contactField })),
  addresses: contactEntries(
    z.strictObject({
      street: contactField,
      city: contactField,
      state: contactField,
      zip: contactField,
      country: contactField,
      country_code: z
        .string()
        .regex(/^[A-Za-z]{2}$/, { error: "must be a two-letter ISO 3166 country code" })
        .optional(),
      type: contactField,
    }),
  ),
  org: z.strictObject({ company: contactField, department: contactField, title: contactField }).optional(),
  birthday: z.iso.date({ error: "must be a date YYYY-MM-DD" }).optional(),
});
export const contactsArray = z.array(contactObject).min(1).max(257);

// Interactive messages.
const interactiveBody = z.strictObject({ text: chars(1024) });
const interactiveFooter = z.strictObject({ text: chars(60) }).optional();
const textHeader = z.strictObject({ type: z.literal("text"), text: chars(60) });
/** Reply buttons and call-to-action URLs take a text or media header; lists a text header only. */
const mediaOrTextHeader = z.discriminatedUnion("type", [
  textHeader,
  z.strictObject({ type: z.literal("image"), image: plainMedia }),
  z.strictObject({ type: z.literal("video"), video: plainMedia }),
  z.strictObject({ type: z.literal("document"), document: headerDocument }),
]);

/** Button and row ids: Meta refuses leading or trailing spaces; they come back in the user's reply. */
const replyId = (max: number) =>
  chars(max).refine((s) => s.trim() === s, { error: "must not start or end with a space" });

const unique = (values: string[]) => new Set(values).size === values.length;

const buttonInteractive = z.strictObject({
  type: z.literal("button"),
  header: mediaOrTextHeader.optional(),
  body: interactiveBody,
  footer: interactiveFooter,
  action: z.strictObject({
    buttons: z
      .array(
        z.strictObject({
          type: z.literal("reply"),
          reply: z.strictObject({ id: replyId(256), title: chars(20) }),
        }),
      )
      .min(1)
      .max(3, { error: "at most 3 reply buttons" })
      .refine((b) => unique(b.map((x) => x.reply.id)), { error: "button ids must be unique" })
      .refine((b) => unique(b.map((x) => x.reply.title)), { error: "button titles must be unique" }),
  }),
});

export const LIST_ROWS_MAX = 10;
const listInteractive = z.strictObject({
  type: z.literal("list"),
  header: textHeader.optional(),
  body: interactiveBody,
  footer: interactiveFooter,
  action: z.strictObject({
    button: chars(20),
    sections: z
      .array(
        z.strictObject({
          title: chars(24).optional(),
          rows: z
            .array(
              z.strictObject({
                id: replyId(200),
                title: chars(24),
                description: chars(72).optional(),
              }),
            )
            .min(1)
            .max(LIST_ROWS_MAX),
        }),
      )
      .min(1)
      .max(10)
      .refine((s) => s.reduce((n, section) => n + section.rows.length, 0) <= LIST_ROWS_MAX, {
        error: `at most ${LIST_ROWS_MAX} rows in all sections together`,
      })
      .refine((s) => s.length === 1 || s.every((section) => section.title !== undefined), {
        error: "every section needs a title when there are several",
      })
      .refine((s) => unique(s.flatMap((section) => section.rows.map((r) => r.id))), {
        error: "row ids must be unique",
      }),
  }),
});

const ctaUrlInteractive = z.strictObject({
  type: z.literal("cta_url"),
  header: mediaOrTextHeader.optional(),
  body: interactiveBody,
  footer: interactiveFooter,
  action: z.strictObject({
    name: z.literal("cta_url"),
    parameters: z.strictObject({ display_text: chars(20), url: httpsUrl }),
  }),
});

export const interactiveObject = z.discriminatedUnion("type", [
  buttonInteractive,
  listInteractive,
  ctaUrlInteractive,
]);

/**
 * A message we refer to: our message id (a UUID, mapped to Meta's id before sending) or Meta's own id (a wamid of
 * an inbound or outbound message, or a WhatsApp Web message id).
 */
export const messageReference = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[A-Za-z0-9._=:+/-]+$/, { error: "must be a message id (ours or Meta's wamid)" });

/** One emoji (a single grapheme that is an emoji), or "" to remove a reaction. */
const graphemes = new Intl.Segmenter("en", { granularity: "grapheme" });
const emoji = z
  .string()
  .max(64)
  .refine(
    (s) => {
      if (s === "") return true;
      const segments = [...graphemes.segment(s)];
      return segments.length === 1 && /\p{Extended_Pictographic}|\p{Regional_Indicator}/u.test(s);
    },
    { error: 'must be one emoji, or "" to remove the reaction' },
  );

export const reactionObject = z.strictObject({ message_id: messageReference, emoji });
export const contextObject = z.strictObject({ message_id: messageReference });

// Templates: the parameters Meta takes per component.
const textParameter = (max: number) => z.strictObject({ type: z.literal("text"), text: chars(max) });
const templateLocation = z.strictObject({
  type: z.literal("location"),
  location: locationObject,
});
const headerParameter = z.discriminatedUnion("type", [
  textParameter(60),
  z.strictObject({ type: z.literal("image"), image: plainMedia }),
  z.strictObject({ type: z.literal("video"), video: plainMedia }),
  z.strictObject({ type: z.literal("document"), document: headerDocument }),
  templateLocation,
]);
const bodyParameter = z.discriminatedUnion("type", [
  textParameter(1024),
  z.strictObject({
    type: z.literal("currency"),
    currency: z.strictObject({
      fallback_value: chars(64),
      code: z.string().regex(/^[A-Z]{3}$/, { error: "must be an ISO 4217 currency code" }),
      amount_1000: z.number().int(),
    }),
  }),
  z.strictObject({
    type: z.literal("date_time"),
    date_time: z.strictObject({ fallback_value: chars(64) }),
  }),
]);
const buttonParameter = z.discriminatedUnion("type", [
  // A URL button's dynamic suffix, or an authentication template's code.
  textParameter(2000),
  z.strictObject({ type: z.literal("payload"), payload: chars(256) }),
  z.strictObject({ type: z.literal("coupon_code"), coupon_code: chars(15) }),
]);

const templateComponent = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("header"), parameters: z.array(headerParameter).max(1) }),
  z.strictObject({ type: z.literal("body"), parameters: z.array(bodyParameter).max(100) }),
  z.strictObject({
    type: z.literal("button"),
    sub_type: z.enum(["url", "quick_reply", "copy_code"]).optional(),
    index: z.number().int().min(0).max(9).optional(),
    parameters: z.array(buttonParameter).max(1),
  }),
]);

const languageCode = z
  .string()
  .min(2)
  .max(16)
  .regex(/^[a-z]{2,3}(_[A-Za-z]{2,4})?$/, { error: "must be a language code such as en_US" });

export const templateSchema = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(512)
    .regex(/^[a-z0-9_]+$/, { error: "template names are lowercase letters, digits and underscores" }),
  /** `"en_US"`, or Meta's own shape `{ "code": "en_US" }`. */
  language: z.union([
    languageCode,
    z.strictObject({ code: languageCode, policy: z.literal("deterministic").optional() }),
  ]),
  components: z.array(templateComponent).max(10).optional(),
});

export type TemplateInput = z.output<typeof templateSchema>;
export type TemplateComponent = NonNullable<TemplateInput["components"]>[number];
export type TemplateParameter = TemplateComponent["parameters"][number];
export type TextObject = z.output<typeof textObject>;
export type ImageObject = z.output<typeof imageObject>;
export type VideoObject = z.output<typeof videoObject>;
export type AudioObject = z.output<typeof audioObject>;
export type DocumentObject = z.output<typeof documentObject>;
export type StickerObject = z.output<typeof stickerObject>;
export type LocationObject = z.output<typeof locationObject>;
export type ContactObject = z.output<typeof contactObject>;
export type InteractiveObject = z.output<typeof interactiveObject>;
export type ReactionObject = z.output<typeof reactionObject>;
export type ContextObject = z.output<typeof contextObject>;
