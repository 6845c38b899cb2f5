import type {
  AudioObject,
  ContactObject,
  ContextObject,
  DocumentObject,
  ImageObject,
  InteractiveObject,
  LocationObject,
  ReactionObject,
  StickerObject,
  TemplateComponent,
  TextObject,
  VideoObject,
} from "./http/outbound-schemas.js";

// The outgoing message model shared by routes, the outbox and the transports: Meta's message object (the types
// are those the request schemas parse, http/outbound-schemas.ts) plus the recipient in E.164.

export type { TemplateComponent, TemplateParameter } from "./http/outbound-schemas.js";

/** A template as stored: the language as its code (the API also takes Meta's `{ code }`). */
export interface OutgoingTemplate {
  name: string;
  language: string;
  components?: TemplateComponent[];
}

/**
 * `context` (a quoted message) and `reaction` name another message by our id or Meta's. `from_me` is set by the
 * outbox when it mapped our id to the provider's (it is never sent to Meta): WhatsApp Web needs to know whose
 * message it is.
 */
interface Envelope {
  to: string;
  context?: ContextObject & { from_me?: boolean };
}

export type OutgoingMessage = Envelope &
  (
    | { type: "text"; text: TextObject }
    | { type: "template"; template: OutgoingTemplate }
    | { type: "image"; image: ImageObject }
    | { type: "video"; video: VideoObject }
    | { type: "audio"; audio: AudioObject }
    | { type: "document"; document: DocumentObject }
    | { type: "sticker"; sticker: StickerObject }
    | { type: "location"; location: LocationObject }
    | { type: "contacts"; contacts: ContactObject[] }
    | { type: "interactive"; interactive: InteractiveObject }
    | { type: "reaction"; reaction: ReactionObject & { from_me?: boolean } }
  );

export type OutgoingType = OutgoingMessage["type"];

/** What is stored per message (and shown as `type`): the message's type, or `otp` for a code sent by /v1/otp. */
export type MessageKind = OutgoingType | "otp";

/** Our message ids are UUIDs; anything else is the provider's id (a wamid, a WhatsApp Web id). */
const OUR_MESSAGE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isOurMessageId(id: string): boolean {
  return OUR_MESSAGE_ID.test(id);
}

/** Where a message names another one, by the request field that holds the id. */
export interface MessageReference {
  field: "context.message_id" | "reaction.message_id";
  id: string;
}

export function referencesOf(message: {
  context?: { message_id: string } | undefined;
  reaction?: { message_id: string };
}): MessageReference[] {
  const references: MessageReference[] = [];
  if (message.context) references.push({ field: "context.message_id", id: message.context.message_id });
  if (message.reaction) references.push({ field: "reaction.message_id", id: message.reaction.message_id });
  return references;
}

/** The template as stored: Meta's `{ code }` language reduced to its code. */
export function storedTemplate(template: {
  name: string;
  language: string | { code: string };
  components?: TemplateComponent[] | undefined;
}): OutgoingTemplate {
  return {
    name: template.name,
    language: typeof template.language === "string" ? template.language : template.language.code,
    ...(template.components ? { components: template.components } : {}),
  };
}

export const MESSAGE_KINDS: readonly MessageKind[] = [
  "text",
  "template",
  "otp",
  "image",
  "video",
  "audio",
  "document",
  "sticker",
  "location",
  "contacts",
  "interactive",
  "reaction",
];

/** Internal status; `sending` is shown as `queued` through the API (the contract's five states). */
export type MessageStatus = "queued" | "sending" | "sent" | "delivered" | "read" | "failed";
export type PublicStatus = "queued" | "sent" | "delivered" | "read" | "failed";

export function publicStatus(status: MessageStatus): PublicStatus {
  return status === "sending" ? "queued" : status;
}

/**
 * Status webhooks arrive in any order: a status only replaces one of lower rank. `failed` sits between `sent`
 * and `delivered`: it overrides a send we thought succeeded, but a later `delivered` or `read` proves delivery.
 */
export const STATUS_RANK: Record<MessageStatus, number> = {
  queued: 0,
  sending: 0,
  sent: 1,
  failed: 1.5,
  delivered: 2,
  read: 3,
};

/** Lower runs first. Single messages and OTPs share the top priority; bulk sends (broadcasts) use a larger one. */
export const PRIORITY = { interactive: 0, bulk: 10 } as const;

/** Stands in a stored payload for a secret kept sealed beside it (an OTP code); filled in just before sending. */
export const SECRET_PLACEHOLDER = "{{secret}}";

export function fillSecret(message: OutgoingMessage, secret: string): OutgoingMessage {
  // A web number sends an OTP as plain text (no templates there).
  if (message.type === "text")
    return {
      ...message,
      text: { ...message.text, body: message.text.body.replaceAll(SECRET_PLACEHOLDER, secret) },
    };
  if (message.type !== "template" || !message.template.components) return message;
  return {
    ...message,
    template: {
      ...message.template,
      components: message.template.components.map(
        (component) =>
          ({
            ...component,
            parameters: component.parameters.map((p) =>
              p.type === "text" && p.text === SECRET_PLACEHOLDER ? { ...p, text: secret } : p,
            ),
          }) as TemplateComponent,
      ),
    },
  };
}
