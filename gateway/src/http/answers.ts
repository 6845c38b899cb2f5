import { z } from "zod";
import { MESSAGE_KINDS, type MessageKind } from "../messages.js";

// What the main routes answer, as zod schemas: the OpenAPI document describes each answer with its route's schema
// (http/openapi.ts), and the openapi test checks real answers against them. The handlers build their answers field
// by field (http/inbox.ts, http/messages.ts, http/media.ts); these schemas are not re-run on every answer (the
// serializer writes the answer as it is, see http/validation.ts). Type-specific fields of a message — `text`,
// `image`, `location`… in Meta's shape — sit beside the fixed ones, so message objects are open (loose).

const timestamp = z.iso.datetime();
const publicStatus = z.enum(["queued", "sent", "delivered", "read", "failed"]);
const kind = z.enum(MESSAGE_KINDS as unknown as [MessageKind, ...MessageKind[]]);
const numberId = z.string().meta({ description: "The number's id, or `default` for the default number" });

/** `{"error":{"code","message"}}`: every answer that is not a success. */
export const errorAnswer = z.object({
  error: z.object({
    code: z.string().meta({ description: "A stable machine-readable reason, e.g. invalid_request" }),
    message: z.string().meta({ description: "What was wrong, starting with the field it is about" }),
    request_id: z.string().optional().meta({ description: "Set when the edge (nginx) answered itself" }),
  }),
});

export const messageAccepted = z.object({ id: z.uuid(), status: z.literal("queued") }).meta({
  description: "Queued; GET /v1/messages/{id} follows it (a replayed Idempotency-Key answers the same)",
});

const sendError = z.object({ code: z.string(), message: z.string().nullable() }).nullable();

export const messageAnswer = z
  .object({
    id: z.uuid(),
    status: publicStatus,
    to: z.string(),
    from: numberId,
    type: kind,
    attempts: z.number().int().min(0),
    provider_message_id: z.string().nullable(),
    error: sendError,
    created_at: timestamp,
    updated_at: timestamp,
  })
  .meta({ description: "The message and its delivery status" });

export const inboundMessageAnswer = z
  .looseObject({
    id: z.string(),
    direction: z.literal("in"),
    number_id: numberId,
    from: z.string(),
    profile_name: z.string().nullable(),
    type: z.string(),
    whatsapp: z
      .unknown()
      .optional()
      .meta({ description: "A type the inbox does not understand: the message object as WhatsApp sent it" }),
    context: z.looseObject({}).nullable(),
    timestamp,
    received_at: timestamp,
    read_at: timestamp.nullable(),
  })
  .meta({
    description: "An inbound message; the type's object sits under the type's name, as in Meta's webhook",
  });

export const outboundMessageAnswer = z
  .looseObject({
    id: z.uuid(),
    direction: z.literal("out"),
    number_id: numberId,
    to: z.string(),
    kind: kind,
    type: z.string(),
    status: publicStatus,
    provider_message_id: z.string().nullable(),
    error: sendError,
    created_at: timestamp,
    updated_at: timestamp,
  })
  .meta({ description: "An outbound message of the token's subject, with its message object's fields" });

const next = z.string().nullable().meta({
  description: "The cursor of the next (older) page, given back as `before`; null on the last page",
});

export const messagesPage = z
  .object({
    messages: z.array(z.union([inboundMessageAnswer, outboundMessageAnswer])),
    next,
  })
  .meta({ description: "A page of messages, newest first" });

export const conversationsPage = z
  .object({
    conversations: z.array(
      z.object({
        contact: z.string(),
        number_id: numberId,
        profile_name: z.string().nullable(),
        unread: z.number().int().min(0),
        last_message: z.union([inboundMessageAnswer, outboundMessageAnswer]),
        last_inbound_at: timestamp,
        window_closes_at: timestamp.meta({
          description: "When the 24-hour customer-service window closes (templates only after it)",
        }),
        window_open: z.boolean(),
      }),
    ),
    next,
  })
  .meta({ description: "A page of conversations, the one whose customer wrote last first" });

export const mediaUploaded = z
  .object({
    id: z.uuid().meta({ description: "The medium's id, for `image.id` (and the like) in POST /v1/messages" }),
    kind: z.enum(["image", "audio", "video", "document", "sticker"]),
    mime_type: z.string(),
    size: z.number().int().min(1),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  })
  .meta({ description: "Uploaded; the type is what the bytes are" });
