import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { EventSink } from "../events.js";
import type { Metrics } from "../metrics.js";
import type { AutoReplier } from "../replies/auto-replier.js";
import type { InboundMessage, StatusUpdate, Store } from "../store/store.js";
import { ApiError } from "./errors.js";

// Meta's webhook. GET answers the subscription handshake; POST carries statuses and inbound messages, signed
// with the app secret over the raw bytes (X-Hub-Signature-256). The signature is checked before anything is
// parsed; the delivery is persisted, then acknowledged with 200. Re-deliveries (and replays of a captured
// request, which the signature cannot tell apart) change nothing: inbound ids are unique and statuses only
// move forward.

export interface MetaWebhookOptions {
  store: Store;
  metrics: Metrics;
  appSecret: string | undefined;
  verifyToken: string | undefined;
  /** Receives `message.received` and `message.status` events; resolves once they are persisted. */
  events?: EventSink;
  /** Answers inbound messages with the automated-reply rules, after the 200 (see replies/auto-replier.ts). */
  autoReplier?: AutoReplier;
}

/** Meta's maximum payload. The API routes keep their small limit; only this route accepts more. */
const WEBHOOK_BODY_LIMIT = 3 * 1024 * 1024;
const SIGNATURE = /^sha256=([0-9a-fA-F]{64})$/;

const handshakeQuery = z.looseObject({
  "hub.mode": z.literal("subscribe"),
  "hub.verify_token": z.string().min(1).max(512),
  "hub.challenge": z.string().regex(/^[A-Za-z0-9_.-]{1,512}$/),
});

const unixSeconds = z.string().regex(/^[0-9]{1,12}$/);

const statusItem = z.looseObject({
  id: z.string().min(1).max(512),
  status: z.enum(["sent", "delivered", "read", "failed"]),
  timestamp: unixSeconds,
  recipient_id: z.string().max(64).optional(),
  biz_opaque_callback_data: z.string().max(512).optional(),
  errors: z
    .array(
      z.looseObject({
        code: z.number().int(),
        title: z.string().max(1000).optional(),
        message: z.string().max(1000).optional(),
      }),
    )
    .optional(),
});

const inboundItem = z.looseObject({
  id: z.string().min(1).max(512),
  from: z.string().regex(/^[0-9]{6,20}$/),
  timestamp: unixSeconds,
  type: z.string().min(1).max(64),
  text: z.looseObject({ body: z.string().max(65_536) }).optional(),
});

/** Who the notification was sent to: the gateway's own number, which automated replies never answer. */
const metadata = z.looseObject({
  display_phone_number: z.string().max(64).optional(),
  phone_number_id: z.string().max(64).optional(),
});

const envelope = z.looseObject({
  object: z.literal("whatsapp_business_account"),
  entry: z
    .array(
      z.looseObject({
        changes: z
          .array(
            z.looseObject({
              field: z.string(),
              value: z.looseObject({
                statuses: z.array(z.unknown()).optional(),
                messages: z.array(z.unknown()).optional(),
              }),
            }),
          )
          .max(1000),
      }),
    )
    .max(1000),
});

function constantTimeEqualText(a: string, b: string): boolean {
  // Hashing first gives equal lengths, so the comparison time says nothing about the expected value.
  return timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest());
}

export function signatureMatches(appSecret: string, rawBody: Buffer, header: unknown): boolean {
  if (typeof header !== "string") return false;
  const match = SIGNATURE.exec(header);
  if (!match?.[1]) return false;
  const expected = createHmac("sha256", appSecret).update(rawBody).digest();
  return timingSafeEqual(expected, Buffer.from(match[1], "hex"));
}

export const metaWebhookRoutes: FastifyPluginAsync<MetaWebhookOptions> = async (app, options) => {
  const { store, metrics, appSecret, verifyToken } = options;
  const replier = options.autoReplier;
  if (replier) {
    // Matches left pending by a stop or a crash are settled once the app is ready.
    app.addHook("onReady", async () => replier.notify());
    app.addHook("onClose", async () => replier.stop());
  }

  // Keep the raw bytes: the signature is over them, not over a re-serialisation.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser(
    "application/json",
    { parseAs: "buffer", bodyLimit: WEBHOOK_BODY_LIMIT },
    (_req, body, done) => done(null, body),
  );

  app.get("/webhooks/whatsapp", async (request, reply) => {
    const query = handshakeQuery.safeParse(request.query);
    if (
      !verifyToken ||
      !query.success ||
      !constantTimeEqualText(query.data["hub.verify_token"], verifyToken)
    ) {
      metrics.webhookEvents.inc({ event: "handshake_refused" });
      throw new ApiError(403, "forbidden", "verification failed");
    }
    metrics.webhookEvents.inc({ event: "handshake" });
    return reply.type("text/plain; charset=utf-8").send(query.data["hub.challenge"]);
  });

  app.post("/webhooks/whatsapp", { bodyLimit: WEBHOOK_BODY_LIMIT }, async (request, reply) => {
    if (!appSecret) throw new ApiError(404, "not_found", "no such route");
    const raw = request.body;
    if (!Buffer.isBuffer(raw)) throw new ApiError(400, "bad_request", "expected a JSON body");
    if (!signatureMatches(appSecret, raw, request.headers["x-hub-signature-256"])) {
      metrics.webhookEvents.inc({ event: "bad_signature" });
      throw new ApiError(401, "invalid_signature", "signature missing or invalid");
    }
    let json: unknown;
    try {
      json = JSON.parse(raw.toString("utf8"));
    } catch {
      throw new ApiError(400, "invalid_json", "request body is not valid JSON");
    }
    const parsed = envelope.safeParse(json);
    if (!parsed.success)
      throw new ApiError(400, "invalid_request", "not a WhatsApp Business Account notification");

    const statuses: StatusUpdate[] = [];
    const inbound: InboundMessage[] = [];
    const ownNumbers: string[] = [];
    let skipped = 0;
    for (const entry of parsed.data.entry) {
      for (const change of entry.changes) {
        const meta = metadata.safeParse(change.value.metadata);
        if (meta.success) {
          if (meta.data.display_phone_number) ownNumbers.push(meta.data.display_phone_number);
          if (meta.data.phone_number_id) ownNumbers.push(meta.data.phone_number_id);
        }
        for (const item of change.value.statuses ?? []) {
          const s = statusItem.safeParse(item);
          if (!s.success) {
            skipped++;
            continue;
          }
          const error = s.data.errors?.[0];
          statuses.push({
            providerMessageId: s.data.id,
            ...(s.data.biz_opaque_callback_data ? { ourMessageId: s.data.biz_opaque_callback_data } : {}),
            status: s.data.status,
            at: Number(s.data.timestamp) * 1000,
            ...(error
              ? {
                  error: {
                    code: String(error.code),
                    message: (error.title ?? error.message ?? "").slice(0, 300),
                  },
                }
              : {}),
          });
        }
        for (const item of change.value.messages ?? []) {
          const m = inboundItem.safeParse(item);
          if (!m.success) {
            skipped++;
            continue;
          }
          inbound.push({
            id: m.data.id,
            from: `+${m.data.from}`,
            type: m.data.type,
            text: m.data.text?.body ?? null,
            sentAt: Number(m.data.timestamp) * 1000,
            raw: item,
          });
        }
      }
    }
    const now = Date.now();
    // The inbound texts' pending matches are written in the same turn, hence in the same commit as the messages:
    // matching runs after the 200, and a crash before it loses nothing (a restart resumes pending matches).
    const matches = options.autoReplier?.matchesToQueue(inbound, ownNumbers, now) ?? [];
    const [result] = await Promise.all([
      store.recordWebhook(statuses, inbound, now),
      matches.length > 0 ? store.queueReplyMatches(matches, now) : undefined,
    ]);
    // After the commit and before the 200: a crash in between makes Meta re-deliver, and the dedupe keys turn
    // the second publication of the same facts into nothing, so events are neither lost nor doubled.
    if (options.events) await publishEvents(options.events, store, statuses, inbound);
    if (matches.some((m) => m.outcome === "pending")) options.autoReplier?.notify();
    metrics.webhookEvents.inc({ event: "delivery" });
    metrics.webhookEvents.inc({ event: "status_applied" }, result.statusesApplied);
    metrics.webhookEvents.inc({ event: "inbound_stored" }, result.inboundStored);
    metrics.webhookEvents.inc({ event: "duplicate" }, result.duplicates);
    if (skipped > 0)
      request.log.warn({ skipped }, "meta webhook: items that did not match the expected shape were skipped");
    return reply.status(200).send({ received: true });
  });
};

async function publishEvents(
  events: EventSink,
  store: Store,
  statuses: StatusUpdate[],
  inbound: InboundMessage[],
): Promise<void> {
  const publications: Array<Promise<void>> = inbound.map((m) =>
    events.publish({
      type: "message.received",
      dedupeKey: `message.received:${m.id}`,
      occurredAt: m.sentAt,
      data: {
        message_id: m.id,
        from: m.from,
        type: m.type,
        text: m.text,
        timestamp: new Date(m.sentAt).toISOString(),
        whatsapp: m.raw,
      },
    }),
  );
  for (const update of statuses) {
    const owner = await store.messageOwner(update.providerMessageId, update.ourMessageId);
    if (!owner) continue;
    publications.push(
      events.publish({
        type: "message.status",
        subject: owner.subject,
        dedupeKey: `message.status:${update.providerMessageId}:${update.status}`,
        occurredAt: update.at,
        data: {
          message_id: owner.id,
          provider_message_id: update.providerMessageId,
          status: update.status,
          timestamp: new Date(update.at).toISOString(),
          error: update.error ?? null,
        },
      }),
    );
  }
  // Published together, they share the commit batcher's transactions.
  await Promise.all(publications);
}
