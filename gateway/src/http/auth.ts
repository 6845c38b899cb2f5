import type { FastifyReply, FastifyRequest } from "fastify";
import {
  grants,
  InvalidToken,
  type Principal,
  type Scope,
  verificationKey,
  verifyToken,
} from "../auth/index.js";
import type { Config } from "../config.js";
import type { Store } from "../store/store.js";
import { forbidden, unauthorized } from "./errors.js";

declare module "fastify" {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** An onRequest hook; `scope` names what it requires, so the OpenAPI document (http/openapi.ts) can say it. */
export type ScopeGuard = ((request: FastifyRequest, reply: FastifyReply) => Promise<void>) & {
  readonly scope?: Scope;
};

const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/;
const MAX_TOKEN_LENGTH = 4096;
const VERIFIED_CACHE_SIZE = 10_000;

/**
 * Returns a preHandler factory: `requireScope("messages:send")`. Every failure (no header, bad signature,
 * alg none, expiry, audience, issuer, revoked) answers the same 401; only a valid token lacking the scope gets
 * 403. The precise reason goes to the log at debug level, never to the client.
 */
export function createScopeGuards(config: Config, store: Store): (scope: Scope) => ScopeGuard {
  const key = verificationKey(config.API_SECRET);
  const verifyOptions = {
    issuer: config.JWT_ISSUER,
    audience: config.JWT_AUDIENCE,
    clockToleranceSeconds: config.JWT_CLOCK_TOLERANCE_SECONDS,
  };

  // A backend reuses one token for many requests: the outcome of a full verification is remembered per exact
  // token string (signature included, so nothing unverified can hit the cache). Expiry is checked again at
  // every use; revocation is always read from the store, so a revoked token stops at its next request.
  const verified = new Map<string, Principal>();

  async function verifyCached(token: string): Promise<Principal> {
    const cached = verified.get(token);
    if (cached && cached.expiresAt > Date.now() / 1000 - config.JWT_CLOCK_TOLERANCE_SECONDS) return cached;
    if (cached) verified.delete(token);
    const principal = await verifyToken(token, { ...verifyOptions, key: await key });
    if (verified.size >= VERIFIED_CACHE_SIZE) {
      const oldest = verified.keys().next().value;
      if (oldest !== undefined) verified.delete(oldest);
    }
    verified.set(token, principal);
    return principal;
  }

  async function authenticate(request: FastifyRequest): Promise<Principal> {
    const header = request.headers.authorization;
    if (typeof header !== "string" || header.length > MAX_TOKEN_LENGTH) throw unauthorized();
    const match = BEARER.exec(header);
    if (!match?.[1]) throw unauthorized();
    let principal: Principal;
    try {
      principal = await verifyCached(match[1]);
    } catch (error) {
      if (error instanceof InvalidToken) request.log.debug({ reason: error.reason }, "token refused");
      throw unauthorized();
    }
    if (await store.isTokenRevoked(principal.tokenId)) {
      request.log.info({ jti: principal.tokenId }, "revoked token refused");
      throw unauthorized();
    }
    return principal;
  }

  return (scope: Scope) =>
    Object.assign(
      async (request: FastifyRequest) => {
        const principal = request.principal ?? (await authenticate(request));
        request.principal = principal;
        if (!grants(principal.scopes, scope)) throw forbidden();
      },
      { scope },
    );
}
