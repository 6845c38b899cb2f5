import { createHmac, hkdfSync, randomInt, timingSafeEqual } from "node:crypto";

// OTP codes: drawn from the CSPRNG, stored only as HMAC-SHA256 under a key derived from API_SECRET with its
// own label (so the JWT key and the OTP key are never the same bytes), compared in constant time.

const OTP_KEY_LABEL = "wagate/otp-code-hmac/v1";

export function deriveOtpKey(apiSecret: string): Buffer {
  return Buffer.from(hkdfSync("sha256", Buffer.from(apiSecret, "utf8"), Buffer.alloc(0), OTP_KEY_LABEL, 32));
}

export function generateCode(length: number): string {
  let code = "";
  for (let i = 0; i < length; i++) code += String(randomInt(0, 10));
  return code;
}

/** The code is bound to its record id: the same digits for another code never hash the same. */
export function hashCode(key: Buffer, otpId: string, code: string): Buffer {
  return createHmac("sha256", key).update(otpId).update("\0").update(code).digest();
}

export function codeMatches(key: Buffer, otpId: string, candidate: string, stored: Buffer): boolean {
  const computed = hashCode(key, otpId, candidate);
  return computed.length === stored.length && timingSafeEqual(computed, stored);
}
