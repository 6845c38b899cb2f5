import { z } from "zod";

// What an inbound message says, in the shape of Meta's webhook message object, whatever brought it (Meta's webhook,
// a web number's socket): `{ "<type>": { …the type's fields… }, "context": { id, from } }`. Meta's documentation
// applies word for word to what the inbox lists. Only the fields below are kept: the medium's download `url` Meta
// now adds expires in minutes and needs the number's token, so it is never handed out (GET /v1/media/:id fetches
// it). A type that is not here (unsupported, system, order, …) or that does not match its schema has no content:
// the inbox lists it with the message object as received.

const id = z.string().min(1).max(512);
const short = z.string().max(1024);
const long = z.string().max(65_536);

const media = z.object({
  id,
  mime_type: z.string().max(255).optional(),
  sha256: z.string().max(128).optional(),
});
const captioned = media.extend({ caption: long.optional() });

const contactCard = z.object({
  name: z
    .object({
      formatted_name: short.optional(),
      first_name: short.optional(),
      last_name: short.optional(),
      middle_name: short.optional(),
      suffix: short.optional(),
      prefix: short.optional(),
    })
    .optional(),
  phones: z
    .array(z.object({ phone: short.optional(), wa_id: short.optional(), type: short.optional() }))
    .max(50)
    .optional(),
  emails: z
    .array(z.object({ email: short.optional(), type: short.optional() }))
    .max(50)
    .optional(),
  urls: z
    .array(z.object({ url: short.optional(), type: short.optional() }))
    .max(50)
    .optional(),
  addresses: z
    .array(
      z.object({
        street: short.optional(),
        city: short.optional(),
        state: short.optional(),
        zip: short.optional(),
        country: short.optional(),
        country_code: short.optional(),
        type: short.optional(),
      }),
    )
    .max(50)
    .optional(),
  org: z
    .object({ company: short.optional(), department: short.optional(), title: short.optional() })
    .optional(),
  birthday: short.optional(),
});

/** Each inbound type the inbox understands, with its object's schema (unknown keys are dropped). */
export const INBOUND_TYPES = {
  text: z.object({ body: long }),
  image: captioned,
  video: captioned,
  audio: media.extend({ voice: z.boolean().optional() }),
  document: captioned.extend({ filename: short.optional() }),
  sticker: media.extend({ animated: z.boolean().optional() }),
  location: z.object({
    latitude: z.number().min(-90).max(90),
    longitude: z.number().min(-180).max(180),
    name: short.optional(),
    address: short.optional(),
    url: short.optional(),
  }),
  contacts: z.array(contactCard).min(1).max(257),
  interactive: z.discriminatedUnion("type", [
    z.object({ type: z.literal("button_reply"), button_reply: z.object({ id: short, title: short }) }),
    z.object({
      type: z.literal("list_reply"),
      list_reply: z.object({ id: short, title: short, description: short.optional() }),
    }),
  ]),
  button: z.object({ payload: short.optional(), text: short }),
  /** A removed reaction comes without `emoji`. */
  reaction: z.object({ message_id: id, emoji: z.string().max(64).optional() }),
} as const;
export type InboundType = keyof typeof INBOUND_TYPES;

export const contextSchema = z.object({
  id: id.optional(),
  from: z.string().max(64).optional(),
  forwarded: z.boolean().optional(),
  frequently_forwarded: z.boolean().optional(),
});
export type InboundContext = z.infer<typeof contextSchema>;

/** `{ [type]: object, context? }`: what the inbox stores and lists for an inbound message it understands. */
export type InboundContent = Record<string, unknown>;

const MEDIA_TYPES = new Set(["image", "video", "audio", "document", "sticker"]);

export interface ParsedContent {
  content: InboundContent | null;
  /** The medium's id, for image, video, audio, document and sticker. */
  mediaId: string | null;
}

function isInboundType(type: string): type is InboundType {
  return Object.hasOwn(INBOUND_TYPES, type);
}

/**
 * The content of a message object of Meta's shape (`type`, the type's object, optional `context`); null when the
 * type is unknown or its object does not match (the message is kept all the same, with its raw object).
 */
export function parseInboundContent(type: string, message: Record<string, unknown>): ParsedContent {
  if (!isInboundType(type)) return { content: null, mediaId: null };
  const body = INBOUND_TYPES[type].safeParse(message[type]);
  if (!body.success) return { content: null, mediaId: null };
  const context = contextSchema.safeParse(message.context);
  const content: InboundContent = { [type]: body.data };
  if (context.success && message.context !== undefined && Object.keys(context.data).length > 0)
    content.context = context.data;
  const mediaId = MEDIA_TYPES.has(type) ? (body.data as { id: string }).id : null;
  return { content, mediaId };
}
