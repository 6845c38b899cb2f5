import type { FastifyPluginAsync } from "fastify";
import { uuidv7 } from "../ids.js";
import {
  isOurMessageId,
  type OutgoingMessage,
  PRIORITY,
  publicStatus,
  referencesOf,
  storedTemplate,
} from "../messages.js";
import type { Metrics } from "../metrics.js";
import {
  DEFAULT_NUMBER_ID,
  refuseUnsupportedOnWeb,
  resolveFrom,
  type SendingNumber,
} from "../numbers/from.js";
import type { MessageRecord, Store } from "../store/store.js";
import type { TemplateCatalog } from "../templates/catalog.js";
import { messageAccepted, messageAnswer } from "./answers.js";
import type { ScopeGuard } from "./auth.js";
import { ApiError, notFound } from "./errors.js";
import { idempotencyClaim, readIdempotencyKey, replayOrConflict } from "./idempotency.js";
import { messageIdParams, noQuery, type SendMessageBody, sendMessageBody } from "./schemas.js";

export interface MessagesRoutesOptions {
  store: Store;
  metrics: Metrics;
  guard: (scope: "messages:send" | "messages:read") => ScopeGuard;
  onEnqueued: () => void;
  /** Template sends are checked against the number's approved templates before anything is queued. */
  templates: TemplateCatalog;
}

/** The request is Meta's message object plus `from`: stored as it came, the template's language as its code. */
function toOutgoing(body: SendMessageBody): OutgoingMessage {
  const { from: _from, ...message } = body;
  return message.type === "template" ? { ...message, template: storedTemplate(message.template) } : message;
}

/**
 * `context` and `reaction` may name our message id: it must be a message of this subject, from the same number,
 * that did not fail (Meta knows it only once sent; the outbox maps it to Meta's id then, see
 * queue/references.ts). The only look-ups on this route, and only for ids of ours. Meta's ids pass as they are.
 */
async function checkReferences(
  store: Store,
  subject: string,
  sending: SendingNumber,
  body: SendMessageBody,
): Promise<void> {
  for (const { field, id } of referencesOf(body)) {
    if (!isOurMessageId(id)) continue;
    const record = await store.getMessage(id);
    if (!record || record.subject !== subject) {
      throw new ApiError(422, "unknown_message", `${field}: no message with this id`);
    }
    if ((record.numberId ?? undefined) !== sending.numberId) {
      throw new ApiError(
        422,
        "message_of_another_number",
        `${field}: that message was sent from another number`,
      );
    }
    if (record.status === "failed") {
      throw new ApiError(
        422,
        "message_failed",
        `${field}: that message failed; it never reached the recipient`,
      );
    }
  }
}

function view(record: MessageRecord) {
  return {
    id: record.id,
    status: publicStatus(record.status),
    to: record.message.to,
    from: record.numberId ?? DEFAULT_NUMBER_ID,
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
  { store, metrics, guard, onEnqueued, templates },
) => {
  app.post(
    "/v1/messages",
    {
      onRequest: guard("messages:send"),
      schema: {
        body: sendMessageBody,
        querystring: noQuery,
        idempotent: true,
        response: { 202: messageAccepted },
      },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (!principal) throw new ApiError(401, "unauthorized", "missing or invalid credentials");
      const body = request.body as SendMessageBody;
      // Before anything is queued: an unknown number, or one that cannot send, is a 422 naming `from`.
      const sending = resolveFrom(store.numbers, body.from);
      refuseUnsupportedOnWeb(sending, body.type, body);
      if (body.type === "reaction" || body.context)
        await checkReferences(store, principal.subject, sending, body);
      if (body.type === "template") {
        // In memory; a promise only when a refusal must first be confirmed by re-reading the list.
        const checking = templates.check(sending.numberId, storedTemplate(body.template));
        if (checking) await checking;
      }
      const key = readIdempotencyKey(request);
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
          ...(sending.numberId ? { numberId: sending.numberId } : {}),
        },
        idempotencyClaim(principal.subject, key, "POST /v1/messages", body, answer),
      );
      if (result.kind !== "created") return replayOrConflict(result, reply);
      metrics.messagesAccepted.inc({ kind: body.type });
      request.log.info({ messageId: id, to: body.to, numberId: sending.numberId }, "message accepted");
      onEnqueued();
      reply.header("location", `/v1/messages/${id}`);
      return reply.status(202).send(answer.body);
    },
  );

  app.get(
    "/v1/messages/:id",
    {
      onRequest: guard("messages:read"),
      schema: { params: messageIdParams, querystring: noQuery, response: { 200: messageAnswer } },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const record = await store.getMessage(id);
      // Another subject's message is indistinguishable from a missing one.
      if (!record || record.subject !== request.principal?.subject) throw notFound("message");
      return view(record);
    },
  );
};
