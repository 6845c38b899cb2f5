import type { Config } from "../config.js";
import { sealerFor } from "../crypto/sealer.js";
import { uuidv7 } from "../ids.js";
import { type OutgoingMessage, PRIORITY, SECRET_PLACEHOLDER } from "../messages.js";
import { DEFAULT_SENDING_NUMBER, type SendingNumber } from "../numbers/from.js";
import type { Store } from "../store/store.js";
import { codeMatches, deriveOtpKey, generateCode, hashCode } from "./codes.js";

export type IssueResult =
  | { kind: "sent"; otpId: string; messageId: string; expiresAt: number }
  | { kind: "cooldown" | "hourly_limit"; retryAfterMs: number }
  | { kind: "number_limit" };

export type VerifyResult = "verified" | "invalid";

export interface OtpService {
  /** `from`: the sending number; a web number sends the code as plain text (WhatsApp Web has no templates). */
  issue(subject: string, phone: string, from?: SendingNumber): Promise<IssueResult>;
  verify(subject: string, phone: string, code: string): Promise<VerifyResult>;
}

/**
 * Meta's authentication template: the code as the body parameter and as the copy-code (url) button's. Stored
 * with a placeholder; the code itself is sealed beside it and filled in by the outbox just before sending.
 */
export function authenticationTemplate(
  config: Config,
  to: string,
  code = SECRET_PLACEHOLDER,
): OutgoingMessage {
  return {
    type: "template",
    to,
    template: {
      name: config.OTP_TEMPLATE_NAME,
      language: config.OTP_TEMPLATE_LANGUAGE,
      components: [
        { type: "body", parameters: [{ type: "text", text: code }] },
        { type: "button", sub_type: "url", index: 0, parameters: [{ type: "text", text: code }] },
      ],
    },
  };
}

/** The code as a web number sends it: plain text, the same words as Meta's authentication template. */
export function plainTextCode(to: string, code = SECRET_PLACEHOLDER): OutgoingMessage {
  return { type: "text", to, text: { body: `${code} is your verification code.`, preview_url: false } };
}

export function createOtpService(config: Config, store: Store, now: () => number = Date.now): OtpService {
  const key = deriveOtpKey(config.API_SECRET);
  // A code issued just before an API_SECRET rotation still verifies while API_SECRET_PREVIOUS is set.
  const keys = config.API_SECRET_PREVIOUS ? [key, deriveOtpKey(config.API_SECRET_PREVIOUS)] : [key];
  const sealer = sealerFor(config);
  const ttlMs = config.OTP_TTL_SECONDS * 1000;
  const limits = {
    cooldownMs: config.OTP_RESEND_COOLDOWN_SECONDS * 1000,
    hourlyLimit: config.OTP_HOURLY_LIMIT,
    numberHourlyLimit: config.OTP_NUMBER_HOURLY_LIMIT,
  };

  return {
    async issue(subject, phone, from = DEFAULT_SENDING_NUMBER) {
      const createdAt = now();
      const otpId = uuidv7(createdAt);
      const messageId = uuidv7(createdAt);
      const code = generateCode(config.OTP_LENGTH);
      const expiresAt = createdAt + ttlMs;
      const result = await store.issueOtp(
        {
          id: otpId,
          subject,
          phone,
          codeHash: hashCode(key, otpId, code),
          createdAt,
          expiresAt,
          maxAttempts: config.OTP_MAX_ATTEMPTS,
          message: {
            id: messageId,
            subject,
            kind: "otp",
            message: from.web ? plainTextCode(phone) : authenticationTemplate(config, phone),
            secret: sealer.seal(code, messageId),
            priority: PRIORITY.interactive,
            createdAt,
            ...(from.numberId ? { numberId: from.numberId } : {}),
          },
        },
        limits,
      );
      if (result.kind !== "created") return result;
      return { kind: "sent", otpId, messageId, expiresAt };
    },

    async verify(subject, phone, code) {
      const at = now();
      // The attempt is spent before comparing, atomically: parallel guesses cannot exceed the limit.
      const attempt = await store.spendOtpAttempt(subject, phone, at);
      if (!attempt) return "invalid";
      if (!keys.some((k) => codeMatches(k, attempt.id, code, attempt.codeHash))) return "invalid";
      return (await store.consumeOtp(attempt.id, at)) ? "verified" : "invalid";
    },
  };
}
