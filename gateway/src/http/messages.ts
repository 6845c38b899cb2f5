import { createHash } from "node:crypto";
import type { FastifyPluginAsync } from "fastify";
import { uuidv7 } from "../ids.js";
import { type OutgoingMessage, PRIORITY, publicStatus } from "../messages.js";
import type { Metrics } from "../metrics.js";
import type { MessageRecord, Store } from "../store/store.js";
import type { ScopeGuard } from "./auth.js";
import { ApiError, notFound } from "./errors.js";
import { idempotencyKey, messageIdParams, type SendMessageBody, sendMessageBody } from "./schemas.js";

export interface MessagesRoutesOptions {
  store: Store;
  metrics: Metrics;
  guard: (scope: "messages:send" | "messages:read") => ScopeGuard;
  onEnqueued: () => void;
}

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

function toOutgoing(body: SendMessageBody): OutgoingMessage {
  return body.type === "text"
    ? { type: "text", to: body.to, text: body.text }
    : { type: "template", to: body.to, template: body.template };
}

function view(record: MessageRecord) {
  return {
    id: record.id,
    status: publicStatus(record.status),
    to: record.message.to,
    type: record.kind,
    attempts: record.attempts,
    provider_message_id: record.providerMessageId,
    error: record.errorCode ? { code: record.errorCode, message: record.errorMessage } : null,
    created_at: new Date(record.createdAt).toISOString(),
    updated_at: new Date(record.updatedAt).toISOString(),
  };
}

export const messagesRoutes: FastifyPluginAsync<MessagesRoutesOptions> = async (
  app,
  { store, metrics, guard, onEnqueued },
) => {
  app.post(
    "/v1/messages",
    { onRequest: guard("messages:send"), schema: { body: sendMessageBody } },
    async (request, reply) => {
      const principal = request.principal;
      if (!principal) throw new ApiError(401, "unauthorized", "missing or invalid credentials");
      const body = request.body as SendMessageBody;
      const rawKey = request.headers["idempotency-key"];
      let key: string | undefined;
      if (rawKey !== undefined) {
        const parsed = idempotencyKey.safeParse(rawKey);
        if (!parsed.success)
          throw new ApiError(400, "invalid_request", "Idempotency-Key must be 1-255 printable characters");
        key = parsed.data;
      }
      const now = Date.now();
      const id = uuidv7(now);
      const answer = { statusCode: 202, body: { id, status: "queued" } };
      const result = await store.enqueueMessage(
        {
          id,
          subject: principal.subject,
          kind: body.type,
          message: toOutgoing(body),
          priority: PRIORITY.interactive,
          createdAt: now,
        },
        key
          ? {
              subject: principal.subject,
              key,
              requestHash: requestHash("POST /v1/messages", body),
              response: answer,
            }
          : undefined,
      );
      if (result.kind === "conflict") {
        throw new ApiError(
          409,
          "idempotency_conflict",
          "this Idempotency-Key was used with a different request",
        );
      }
      if (result.kind === "replayed") {
        reply.header("idempotent-replayed", "true");
        return reply.status(result.response.statusCode).send(result.response.body);
      }
      metrics.messagesAccepted.inc({ kind: body.type });
      request.log.info({ messageId: id, to: body.to }, "message accepted");
      onEnqueued();
      reply.header("location", `/v1/messages/${id}`);
      return reply.status(202).send(answer.body);
    },
  );

  app.get(
    "/v1/messages/:id",
    { onRequest: guard("messages:read"), schema: { params: messageIdParams } },
    async (request) => {
      const { id } = request.params as { id: string };
      const record = await store.getMessage(id);
      // Another subject's message is indistinguishable from a missing one.
      if (!record || record.subject !== request.principal?.subject) throw notFound("message");
      return view(record);
    },
  );
};
