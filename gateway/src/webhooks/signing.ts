import { createHmac, randomBytes } from "node:crypto";

// X-Wagate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>"> keyed with the subscription's
// secret. The timestamp is signed with the body so a receiver can refuse old replays (tolerance of its choice).

export const SIGNATURE_HEADER = "x-wagate-signature";

export function newSigningSecret(): string {
  return `whsec_${randomBytes(32).toString("base64url")}`;
}

export function signatureHeader(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex");
  return `t=${unixSeconds},v1=${mac}`;
}
