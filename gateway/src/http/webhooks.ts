import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { Sealer } from "../crypto/sealer.js";
import { EVENT_TYPES } from "../events.js";
import { uuidv7 } from "../ids.js";
import type { Store } from "../store/store.js";
import type { WebhookDelivery, WebhookSubscription } from "../store/webhooks.js";
import { secretAssociatedData } from "../webhooks/dispatcher.js";
import { newSigningSecret } from "../webhooks/signing.js";
import { checkWebhookTarget, type HostResolver, RefusedUrl, type UrlPolicy } from "../webhooks/ssrf.js";
import type { ScopeGuard } from "./auth.js";
import { ApiError, notFound, unauthorized } from "./errors.js";
import { noQuery } from "./schemas.js";

// /v1/webhooks: a token's outbound webhook subscriptions (scope `webhooks`) and their deliveries. The signing
// secret is answered once, at creation; it is stored sealed (it must be recoverable to sign) and never shown
// again.

export interface WebhooksRoutesOptions {
  store: Store;
  sealer: Sealer;
  guard: (scope: "webhooks") => ScopeGuard;
  policy: UrlPolicy;
  resolve: HostResolver;
  maxPerSubject: number;
  /** Wakes the dispatcher after a redeliver call. */
  onQueued: () => void;
}

const events = z
  .array(z.enum(EVENT_TYPES))
  .min(1)
  .max(EVENT_TYPES.length)
  .refine((list) => new Set(list).size === list.length, { error: "events must not repeat" });
const url = z.string().min(1).max(2048);
const createBody = z.strictObject({ url, events });
const patchBody = z
  .strictObject({ url, events })
  .partial()
  .refine((b) => Object.keys(b).length > 0, { error: "nothing to change" });
const idParams = z.strictObject({ id: z.uuid() });
const deliveryParams = z.strictObject({ id: z.uuid(), deliveryId: z.uuid() });
const deliveriesQuery = z.strictObject({
  status: z.enum(["pending", "delivering", "delivered", "failed"]).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(50),
  before: z.uuid().optional(),
});

function view(sub: WebhookSubscription) {
  return {
    id: sub.id,
    url: sub.url,
    events: sub.events,
    created_at: new Date(sub.createdAt).toISOString(),
    updated_at: new Date(sub.updatedAt).toISOString(),
  };
}

function deliveryView(d: WebhookDelivery) {
  return {
    id: d.id,
    event_id: d.eventId,
    event_type: d.eventType,
    status: d.status,
    attempts: d.attempts,
    next_attempt_at: d.status === "pending" ? new Date(d.nextAttemptAt).toISOString() : null,
    last_status_code: d.lastStatusCode,
    last_error: d.lastError,
    delivered_at: d.deliveredAt === null ? null : new Date(d.deliveredAt).toISOString(),
    created_at: new Date(d.createdAt).toISOString(),
    updated_at: new Date(d.updatedAt).toISOString(),
  };
}

export const webhooksRoutes: FastifyPluginAsync<WebhooksRoutesOptions> = async (app, options) => {
  const { store, guard } = options;
  const subjectOf = (principal: { subject: string } | null) => {
    if (!principal) throw unauthorized();
    return principal.subject;
  };
  async function checkUrl(raw: string, subject: string): Promise<string> {
    try {
      return (await checkWebhookTarget(raw, options.policy, options.resolve, subject)).url.href;
    } catch (error) {
      if (error instanceof RefusedUrl) throw new ApiError(422, "url_refused", `url: ${error.message}`);
      throw error;
    }
  }

  app.post(
    "/v1/webhooks",
    { onRequest: guard("webhooks"), schema: { body: createBody, querystring: noQuery } },
    async (request, reply) => {
      const subject = subjectOf(request.principal);
      const body = request.body as z.infer<typeof createBody>;
      const href = await checkUrl(body.url, subject);
      const now = Date.now();
      const id = uuidv7(now);
      const secret = newSigningSecret();
      const sub: WebhookSubscription = {
        id,
        subject,
        url: href,
        events: body.events,
        sealedSecret: options.sealer.seal(secret, secretAssociatedData(id)),
        createdAt: now,
        updatedAt: now,
      };
      if (!(await store.createWebhook(sub, options.maxPerSubject))) {
        throw new ApiError(
          422,
          "too_many_webhooks",
          `at most ${options.maxPerSubject} webhooks per token subject`,
        );
      }
      return reply.status(201).send({ ...view(sub), secret });
    },
  );

  app.get(
    "/v1/webhooks",
    { onRequest: guard("webhooks"), schema: { querystring: noQuery } },
    async (request) => {
      return { data: (await store.listWebhooks(subjectOf(request.principal))).map(view) };
    },
  );

  app.get(
    "/v1/webhooks/:id",
    { onRequest: guard("webhooks"), schema: { params: idParams, querystring: noQuery } },
    async (request) => {
      const { id } = request.params as { id: string };
      const sub = await store.getWebhook(subjectOf(request.principal), id);
      if (!sub) throw notFound("webhook");
      return view(sub);
    },
  );

  app.patch(
    "/v1/webhooks/:id",
    { onRequest: guard("webhooks"), schema: { params: idParams, body: patchBody, querystring: noQuery } },
    async (request) => {
      const subject = subjectOf(request.principal);
      const { id } = request.params as { id: string };
      const body = request.body as z.infer<typeof patchBody>;
      const patch = {
        ...(body.url !== undefined ? { url: await checkUrl(body.url, subject) } : {}),
        ...(body.events !== undefined ? { events: body.events } : {}),
      };
      const updated = await store.updateWebhook(subject, id, patch, Date.now());
      if (!updated) throw notFound("webhook");
      return view(updated);
    },
  );

  app.delete(
    "/v1/webhooks/:id",
    { onRequest: guard("webhooks"), schema: { params: idParams, querystring: noQuery } },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      if (!(await store.deleteWebhook(subjectOf(request.principal), id))) throw notFound("webhook");
      return reply.status(204).send();
    },
  );

  app.get(
    "/v1/webhooks/:id/deliveries",
    { onRequest: guard("webhooks"), schema: { params: idParams, querystring: deliveriesQuery } },
    async (request) => {
      const { id } = request.params as { id: string };
      const query = request.query as z.infer<typeof deliveriesQuery>;
      const list = await store.listDeliveries(subjectOf(request.principal), id, {
        limit: query.limit,
        ...(query.status ? { status: query.status } : {}),
        ...(query.before ? { before: query.before } : {}),
      });
      if (!list) throw notFound("webhook");
      return { data: list.map(deliveryView) };
    },
  );

  app.post(
    "/v1/webhooks/:id/deliveries/:deliveryId/redeliver",
    { onRequest: guard("webhooks"), schema: { params: deliveryParams, querystring: noQuery } },
    async (request, reply) => {
      const { id, deliveryId } = request.params as { id: string; deliveryId: string };
      if (!(await store.redeliver(subjectOf(request.principal), id, deliveryId, Date.now()))) {
        throw notFound("delivery");
      }
      options.onQueued();
      return reply.status(202).send({ id: deliveryId, status: "pending" });
    },
  );
};
