import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { EventSink } from "../events.js";
import { parseInboundContent } from "../inbound/content.js";
import type { InboundPipeline } from "../inbound/pipeline.js";
import type { Metrics } from "../metrics.js";
import { DEFAULT_NUMBER_ID } from "../numbers/from.js";
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
  /** Receives `message.status` events; resolves once they are persisted. */
  events?: EventSink;
  /** What happens to inbound messages once stored: `message.received` events, automated replies. */
  inbound?: InboundPipeline;
  /**
   * Which of our numbers a notification is for, by its `metadata.phone_number_id`: the default number, a cloud
   * number of the registry, or nobody's (stored for an operator, otherwise ignored).
   */
  route?: (phoneNumberId: string | undefined) =>
    | { kind: "default" }
    | { kind: "number"; numberId: string }
    | {
        kind: "unknown";
      };
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

/** Who wrote: Meta names each sender's WhatsApp profile beside the messages. */
const senderProfile = z.looseObject({
  wa_id: z.string().max(64),
  profile: z.looseObject({ name: z.string().max(256) }),
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
                contacts: z.array(z.unknown()).optional(),
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
    const unrouted: Array<{ phoneNumberId: string; body: string }> = [];
    let skipped = 0;
    for (const entry of parsed.data.entry) {
      for (const change of entry.changes) {
        const meta = metadata.safeParse(change.value.metadata);
        const phoneNumberId = meta.success ? meta.data.phone_number_id : undefined;
        const route = options.route?.(phoneNumberId) ?? { kind: "default" as const };
        if (route.kind === "unknown") {
          // Not a number of ours: kept for an operator to look at, and acknowledged (Meta would retry a 5xx).
          unrouted.push({ phoneNumberId: phoneNumberId ?? "", body: JSON.stringify(change.value) });
          continue;
        }
        const numberId = route.kind === "number" ? route.numberId : undefined;
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
        const profiles = new Map<string, string>();
        for (const contact of change.value.contacts ?? []) {
          const c = senderProfile.safeParse(contact);
          if (c.success) profiles.set(c.data.wa_id, c.data.profile.name);
        }
        for (const item of change.value.messages ?? []) {
          const m = inboundItem.safeParse(item);
          if (!m.success) {
            skipped++;
            continue;
          }
          // A type the inbox does not understand is stored all the same (its raw object is what it lists).
          const { content, mediaId } = parseInboundContent(m.data.type, m.data);
          inbound.push({
            id: m.data.id,
            from: `+${m.data.from}`,
            type: m.data.type,
            text: m.data.text?.body ?? null,
            sentAt: Number(m.data.timestamp) * 1000,
            raw: item,
            content,
            mediaId,
            profileName: profiles.get(m.data.from) ?? null,
            ...(numberId ? { numberId } : {}),
          });
        }
      }
    }
    const now = Date.now();
    const [result] = await Promise.all([
      store.recordWebhook(statuses, inbound, now),
      ...unrouted.map((u) => store.numbers.recordUnroutedWebhook(u.phoneNumberId, u.body, now)),
    ]);
    // After the commit and before the 200: a crash in between makes Meta re-deliver (and leaves the inbound
    // messages unprocessed, for the pipeline's recovery at the next start); the dedupe keys turn the second
    // publication of the same facts into nothing, so events are neither lost nor doubled.
    await Promise.all([
      options.events ? publishStatusEvents(options.events, store, statuses) : undefined,
      options.inbound?.process(inbound, ownNumbers, now),
    ]);
    if (unrouted.length > 0) {
      metrics.webhookEvents.inc({ event: "unrouted" }, unrouted.length);
      request.log.warn(
        { changes: unrouted.length },
        "meta webhook: notifications for a phone number id no number has were stored and ignored",
      );
    }
    metrics.webhookEvents.inc({ event: "delivery" });
    metrics.webhookEvents.inc({ event: "status_applied" }, result.statusesApplied);
    metrics.webhookEvents.inc({ event: "inbound_stored" }, result.inboundStored);
    metrics.webhookEvents.inc({ event: "duplicate" }, result.duplicates);
    if (skipped > 0)
      request.log.warn({ skipped }, "meta webhook: items that did not match the expected shape were skipped");
    return reply.status(200).send({ received: true });
  });
};

/** `message.status` for each status of a message of ours, to its owner. */
export async function publishStatusEvents(
  events: EventSink,
  store: Store,
  statuses: readonly StatusUpdate[],
): Promise<void> {
  const publications: Array<Promise<void>> = [];
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
          number_id: owner.numberId ?? DEFAULT_NUMBER_ID,
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
