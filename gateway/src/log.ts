import type { FastifyLoggerOptions } from "fastify";
import { maskPhone } from "./phone.js";

// Whatever reaches the logs passes through here: credentials and OTP codes are removed, phone numbers masked.
// Routes log identifiers (message id, subject), never bodies; the redaction is the second line of defence.

const REDACTED_PATHS = [
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["x-hub-signature-256"]',
  "headers.authorization",
  "authorization",
  "token",
  "accessToken",
  "access_token",
  "secret",
  "apiSecret",
  "appSecret",
  "code",
  "otp",
  "*.token",
  "*.secret",
  "*.code",
  "*.otp",
  "*.authorization",
];

const PHONE_KEYS = new Set(["to", "from", "phone", "recipient", "recipient_id", "wa_id"]);

/** Masks phone numbers under the keys that carry them, at the top level of a log object. */
function maskPhones(object: Record<string, unknown>): Record<string, unknown> {
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(object)) {
    const value = object[key];
    if (PHONE_KEYS.has(key) && typeof value === "string") {
      copy ??= { ...object };
      copy[key] = maskPhone(value);
    }
  }
  return copy ?? object;
}

export function loggerOptions(level: string): FastifyLoggerOptions & Record<string, unknown> {
  return {
    level,
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    formatters: { log: maskPhones },
    serializers: {
      // The URL may carry hub.verify_token on Meta's handshake: log the path only.
      req: (req: { method: string; url: string; id: string }) => ({
        method: req.method,
        path: req.url.split("?")[0],
        id: req.id,
      }),
    },
  };
}
