import { z } from "zod";
import { e164Schema } from "../phone.js";

// Request bodies. Objects are strict: an unknown field is a 400, not silently ignored.

const textParameter = z.strictObject({ type: z.literal("text"), text: z.string().min(1).max(1024) });
const payloadParameter = z.strictObject({ type: z.literal("payload"), payload: z.string().min(1).max(256) });
const couponParameter = z.strictObject({
  type: z.literal("coupon_code"),
  coupon_code: z.string().min(1).max(15),
});

const templateComponent = z.strictObject({
  type: z.enum(["header", "body", "button"]),
  sub_type: z.enum(["url", "quick_reply", "copy_code"]).optional(),
  index: z.number().int().min(0).max(9).optional(),
  parameters: z
    .array(z.discriminatedUnion("type", [textParameter, payloadParameter, couponParameter]))
    .max(20),
});

export const templateSchema = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(512)
    .regex(/^[a-z0-9_]+$/, { error: "template names are lowercase letters, digits and underscores" }),
  language: z
    .string()
    .min(2)
    .max(16)
    .regex(/^[a-z]{2,3}(_[A-Za-z]{2,4})?$/, { error: "must be a language code such as en_US" }),
  components: z.array(templateComponent).max(10).optional(),
});

/** `from`: a number id of the registry, or `default`; absent means the default number. */
export const fromField = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9-]+$/, { error: "must be a number id (GET /v1/numbers) or default" });

export const sendMessageBody = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("text"),
    from: fromField.optional(),
    to: e164Schema,
    text: z.strictObject({
      body: z
        .string()
        .min(1)
        .refine((s) => [...s].length <= 4096, { error: "must be at most 4096 characters" }),
      preview_url: z.boolean().optional(),
    }),
  }),
  z.strictObject({
    type: z.literal("template"),
    from: fromField.optional(),
    to: e164Schema,
    template: templateSchema,
  }),
]);
export type SendMessageBody = z.infer<typeof sendMessageBody>;

export const messageIdParams = z.strictObject({ id: z.uuid() });

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
