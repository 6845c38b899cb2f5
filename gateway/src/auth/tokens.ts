import { randomUUID, webcrypto } from "node:crypto";
import { errors, jwtVerify, SignJWT } from "jose";
import type { Scope } from "./scopes.js";

// HS256 only, keyed with the UTF-8 bytes of API_SECRET's text (what `jsonwebtoken.sign(payload, API_SECRET)`
// uses), so tokens minted by any standard library with the right claims work here too.

const ALGORITHM = "HS256";

export interface Principal {
  readonly subject: string;
  readonly scopes: ReadonlySet<string>;
  readonly tokenId: string;
  readonly expiresAt: number;
}

export interface MintOptions {
  secret: string;
  sub: string;
  scopes: readonly Scope[];
  ttlSeconds: number;
  issuer: string;
  audience: string;
  /** Defaults to a random UUID; the id `npm run revoke` takes. */
  jti?: string;
}

export function secretKey(secret: string): Uint8Array {
  return new TextEncoder().encode(secret);
}

/** The verification key imported once (importing it on every request costs as much as the HMAC itself). */
export function verificationKey(secret: string): Promise<webcrypto.CryptoKey> {
  return webcrypto.subtle.importKey("raw", secretKey(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "verify",
  ]);
}

/** Signs a token for the gateway. Used by `npm run token`, the tests and the benchmarks. */
export async function mintToken(
  options: MintOptions,
): Promise<{ token: string; jti: string; expiresAt: Date }> {
  if (!Number.isInteger(options.ttlSeconds) || options.ttlSeconds <= 0)
    throw new Error("ttlSeconds must be > 0");
  const jti = options.jti ?? randomUUID();
  const now = Math.floor(Date.now() / 1000);
  const exp = now + options.ttlSeconds;
  const token = await new SignJWT({ scope: options.scopes.join(" ") })
    .setProtectedHeader({ alg: ALGORITHM, typ: "JWT" })
    .setSubject(options.sub)
    .setIssuer(options.issuer)
    .setAudience(options.audience)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(exp)
    .setJti(jti)
    .sign(secretKey(options.secret));
  return { token, jti, expiresAt: new Date(exp * 1000) };
}

export interface VerifyOptions {
  key: Uint8Array | webcrypto.CryptoKey;
  issuer: string;
  audience: string;
  clockToleranceSeconds: number;
}

/** Thrown for every rejected token; the reason stays in the server's logs, never in the answer. */
export class InvalidToken extends Error {
  constructor(readonly reason: string) {
    super("invalid token");
    this.name = "InvalidToken";
  }
}

/** Verifies signature and claims. Revocation is checked by the caller against the store. */
export async function verifyToken(token: string, options: VerifyOptions): Promise<Principal> {
  let payload: Awaited<ReturnType<typeof jwtVerify>>["payload"];
  try {
    ({ payload } = await jwtVerify(token, options.key, {
      algorithms: [ALGORITHM],
      issuer: options.issuer,
      audience: options.audience,
      clockTolerance: options.clockToleranceSeconds,
      requiredClaims: ["exp", "iss", "aud", "sub", "jti"],
    }));
  } catch (error) {
    const reason = error instanceof errors.JOSEError ? error.code : "malformed";
    throw new InvalidToken(reason);
  }
  const { sub, jti, exp, scope } = payload;
  if (typeof sub !== "string" || sub.length === 0 || sub.length > 200) throw new InvalidToken("sub");
  if (typeof jti !== "string" || jti.length === 0 || jti.length > 200) throw new InvalidToken("jti");
  if (scope !== undefined && typeof scope !== "string") throw new InvalidToken("scope");
  const scopes = new Set((scope ?? "").split(" ").filter((s) => s.length > 0));
  return { subject: sub, scopes, tokenId: jti, expiresAt: exp ?? 0 };
}
