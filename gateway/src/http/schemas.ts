import { z } from "zod";
import { e164Schema } from "../phone.js";
import {
  audioObject,
  contactsArray,
  contextObject,
  documentObject,
  imageObject,
  interactiveObject,
  locationObject,
  reactionObject,
  stickerObject,
  templateSchema,
  textObject,
  videoObject,
} from "./outbound-schemas.js";

export { templateSchema };

// Request bodies. Objects are strict: an unknown field is a 400, not silently ignored.

/** `from`: a number id of the registry, or `default`; absent means the default number. */
export const fromField = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9-]+$/, { error: "must be a number id (GET /v1/numbers) or default" });

/** The fields every message shares; `context` quotes an earlier message (ours or the customer's). */
const envelope = {
  from: fromField.optional(),
  to: e164Schema,
  context: contextObject.optional(),
};

export const sendMessageBody = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("text"), ...envelope, text: textObject }),
  z.strictObject({ type: z.literal("template"), ...envelope, template: templateSchema }),
  z.strictObject({ type: z.literal("image"), ...envelope, image: imageObject }),
  z.strictObject({ type: z.literal("video"), ...envelope, video: videoObject }),
  z.strictObject({ type: z.literal("audio"), ...envelope, audio: audioObject }),
  z.strictObject({ type: z.literal("document"), ...envelope, document: documentObject }),
  z.strictObject({ type: z.literal("sticker"), ...envelope, sticker: stickerObject }),
  z.strictObject({ type: z.literal("location"), ...envelope, location: locationObject }),
  z.strictObject({ type: z.literal("contacts"), ...envelope, contacts: contactsArray }),
  z.strictObject({ type: z.literal("interactive"), ...envelope, interactive: interactiveObject }),
  // A reaction quotes nothing: the message it reacts to is inside it.
  z.strictObject({
    type: z.literal("reaction"),
    from: fromField.optional(),
    to: e164Schema,
    reaction: reactionObject,
  }),
]);
export type SendMessageBody = z.infer<typeof sendMessageBody>;

export const messageIdParams = z.strictObject({ id: z.uuid() });

/**
 * The query string of a /v1/ route that takes none: strict and empty, so `?anything` is a 400 naming it, as an
 * unknown body field is. Every /v1/ route declares its query schema (this one, or its own strict object), also when
 * the edge in front of it checks nothing (`npm run gateway` alone, the edge's identity off).
 */
export const noQuery = z.strictObject({});
/** A query string read by nothing and accepted whatever it holds: the reference page's (http/api-reference.ts). */
export const ignoredQuery = z.looseObject({});

export const idempotencyKey = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, { error: "must be printable ASCII without spaces" });

export const otpRequestBody = z.strictObject({ to: e164Schema, from: fromField.optional() });
export const otpVerifyBody = z.strictObject({ to: e164Schema, code: z.string().regex(/^[0-9]{4,15}$/) });

export const revokeBody = z.strictObject({
  jti: z.string().min(1).max(200),
  reason: z.string().max(200).optional(),
});
