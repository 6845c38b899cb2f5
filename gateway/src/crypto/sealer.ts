import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

// Seals the few secrets the outbox must keep until a message is sent (an OTP code), so the database never
// holds them in clear. AES-256-GCM under a key derived from API_SECRET with its own label; the message id is
// the associated data, so a sealed value cannot be moved to another row.

const LABEL = "wagate/outbox-secret/v1";
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface Sealer {
  seal(plaintext: string, associatedData: string): Buffer;
  open(sealed: Buffer, associatedData: string): string;
}

export function createSealer(apiSecret: string): Sealer {
  const key = Buffer.from(hkdfSync("sha256", Buffer.from(apiSecret, "utf8"), Buffer.alloc(0), LABEL, 32));
  return {
    seal(plaintext, associatedData) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv("aes-256-gcm", key, iv);
      cipher.setAAD(Buffer.from(associatedData, "utf8"));
      const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
      return Buffer.concat([iv, body, cipher.getAuthTag()]);
    },
    open(sealed, associatedData) {
      const iv = sealed.subarray(0, IV_BYTES);
      const tag = sealed.subarray(sealed.length - TAG_BYTES);
      const decipher = createDecipheriv("aes-256-gcm", key, iv);
      decipher.setAAD(Buffer.from(associatedData, "utf8"));
      decipher.setAuthTag(tag);
      return Buffer.concat([
        decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]).toString("utf8");
    },
  };
}
