import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import type { Config } from "../config.js";

// Seals the few secrets the gateway must keep but never hold in clear: an OTP code until its message is sent,
// an outbound webhook's signing secret. AES-256-GCM under a key derived from API_SECRET with its own label; the
// associated data binds a sealed value to its row, so it cannot be moved to another.
//
// Rotation: while API_SECRET_PREVIOUS is set, values sealed under the previous secret still open, and
// `reseal` moves them under the current one (the gateway does so for every stored value when it starts).

const LABEL = "wagate/outbox-secret/v1";
const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface Sealer {
  seal(plaintext: string, associatedData: string): Buffer;
  /** Throws when the value opens under neither key (tampered, moved, or sealed under an older secret). */
  open(sealed: Buffer, associatedData: string): string;
  /** The value sealed under the current key when it opened only under the previous one; undefined otherwise. */
  reseal(sealed: Buffer, associatedData: string): Buffer | undefined;
}

function sealingKey(secret: string): Buffer {
  return Buffer.from(hkdfSync("sha256", Buffer.from(secret, "utf8"), Buffer.alloc(0), LABEL, 32));
}

function openWith(key: Buffer, sealed: Buffer, associatedData: string): string {
  const iv = sealed.subarray(0, IV_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const decipher = createDecipheriv("aes-256-gcm", key, iv);
  decipher.setAAD(Buffer.from(associatedData, "utf8"));
  decipher.setAuthTag(tag);
  return Buffer.concat([
    decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)),
    decipher.final(),
  ]).toString("utf8");
}

/** The gateway's sealer: API_SECRET, and API_SECRET_PREVIOUS during a rotation. */
export function sealerFor(config: Pick<Config, "API_SECRET" | "API_SECRET_PREVIOUS">): Sealer {
  return createSealer(config.API_SECRET, config.API_SECRET_PREVIOUS);
}

export function createSealer(apiSecret: string, previousSecret?: string): Sealer {
  const key = sealingKey(apiSecret);
  const previousKey = previousSecret ? sealingKey(previousSecret) : undefined;
  function seal(plaintext: string, associatedData: string): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    cipher.setAAD(Buffer.from(associatedData, "utf8"));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return Buffer.concat([iv, body, cipher.getAuthTag()]);
  }
  return {
    seal,
    open(sealed, associatedData) {
      try {
        return openWith(key, sealed, associatedData);
      } catch (error) {
        if (!previousKey) throw error;
        return openWith(previousKey, sealed, associatedData);
      }
    },
    reseal(sealed, associatedData) {
      try {
        openWith(key, sealed, associatedData);
        return undefined;
      } catch (error) {
        if (!previousKey) throw error;
        return seal(openWith(previousKey, sealed, associatedData), associatedData);
      }
    },
  };
}
