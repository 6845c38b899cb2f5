import { createHash } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { EnqueueResult, IdempotencyClaim } from "../store/store.js";
import { ApiError } from "./errors.js";
import { idempotencyKey } from "./schemas.js";

// `Idempotency-Key` for the routes that create work (messages, broadcasts): the store records the first answer
// with what it created, in the same transaction, so a retry gets that answer and nothing is sent twice.

/** Stable JSON (sorted keys), so the same body always hashes the same for Idempotency-Key comparisons. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value);
}

export function requestHash(route: string, body: unknown): string {
  return createHash("sha256").update(route).update("\n").update(canonicalJson(body)).digest("hex");
}

/** The request's `Idempotency-Key`, validated; undefined when the client sent none. */
export function readIdempotencyKey(request: FastifyRequest): string | undefined {
  // The OpenAPI document names the header on the routes that declare it: a route that reads it without saying so
  // fails on its first request, in the tests, instead of going undocumented.
  if (request.routeOptions.schema?.idempotent !== true)
    throw new Error(`${request.routeOptions.url}: reads Idempotency-Key without schema.idempotent`);
  const raw = request.headers["idempotency-key"];
  if (raw === undefined) return undefined;
  const parsed = idempotencyKey.safeParse(raw);
  if (!parsed.success)
    throw new ApiError(400, "invalid_request", "Idempotency-Key must be 1-255 printable characters");
  return parsed.data;
}

/** What the store keeps beside the created work when the client sent a key. */
export function idempotencyClaim(
  subject: string,
  key: string | undefined,
  route: string,
  body: unknown,
  response: IdempotencyClaim["response"],
): IdempotencyClaim | undefined {
  return key ? { subject, key, requestHash: requestHash(route, body), response } : undefined;
}

/** A key reused with another body is a 409; a retry gets the first answer again, marked as replayed. */
export function replayOrConflict(
  result: Exclude<EnqueueResult, { kind: "created" }>,
  reply: FastifyReply,
): FastifyReply {
  if (result.kind === "conflict") {
    throw new ApiError(409, "idempotency_conflict", "this Idempotency-Key was used with a different request");
  }
  reply.header("idempotent-replayed", "true");
  return reply.status(result.response.statusCode).send(result.response.body);
}
