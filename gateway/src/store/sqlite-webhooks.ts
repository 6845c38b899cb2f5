import type BetterSqlite3 from "better-sqlite3";
import type { EventType } from "../events.js";
import { uuidv7 } from "../ids.js";
import type { CommitBatcher } from "./commit-batcher.js";
import type {
  DeliveryStatus,
  DueDelivery,
  PublishedEvent,
  WebhookDelivery,
  WebhookSubscription,
  WebhooksStore,
} from "./webhooks.js";

// The SQLite side of outbound webhooks (tables of migration 3): subscriptions, events, and the delivery queue
// the dispatcher claims from with a lease, like the outbox.

interface SubscriptionRow {
  id: string;
  subject: string;
  url: string;
  events: string;
  secret: Buffer;
  created_at: number;
  updated_at: number;
}

interface DeliveryRow {
  id: string;
  subscription_id: string;
  event_id: string;
  event_type: EventType;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: number;
  window_started_at: number;
  last_status_code: number | null;
  last_error: string | null;
  delivered_at: number | null;
  created_at: number;
  updated_at: number;
}

/** Bookkeeping of attempts: a lost one is retried (at-least-once), so no fsync is awaited for it. */
const BOOKKEEPING = { durable: false } as const;

function toSubscription(row: SubscriptionRow): WebhookSubscription {
  return {
    id: row.id,
    subject: row.subject,
    url: row.url,
    events: JSON.parse(row.events) as EventType[],
    sealedSecret: row.secret,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toDelivery(row: DeliveryRow): WebhookDelivery {
  return {
    id: row.id,
    subscriptionId: row.subscription_id,
    eventId: row.event_id,
    eventType: row.event_type,
    status: row.status,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    windowStartedAt: row.window_started_at,
    lastStatusCode: row.last_status_code,
    lastError: row.last_error,
    deliveredAt: row.delivered_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function createSqliteWebhooksStore(db: BetterSqlite3.Database, batcher: CommitBatcher): WebhooksStore {
  const s = {
    countSubs: db.prepare("SELECT COUNT(*) FROM webhook_subscriptions WHERE subject = ?").pluck(),
    insertSub: db.prepare(
      `INSERT INTO webhook_subscriptions (id, subject, url, events, secret, created_at, updated_at)
       VALUES (@id, @subject, @url, @events, @secret, @createdAt, @updatedAt)`,
    ),
    listSubs: db.prepare("SELECT * FROM webhook_subscriptions WHERE subject = ? ORDER BY created_at, id"),
    getSub: db.prepare("SELECT * FROM webhook_subscriptions WHERE subject = ? AND id = ?"),
    updateSub: db.prepare(
      "UPDATE webhook_subscriptions SET url = @url, events = @events, updated_at = @now WHERE subject = @subject AND id = @id",
    ),
    deleteSub: db.prepare("DELETE FROM webhook_subscriptions WHERE subject = ? AND id = ?"),
    // Events about a subject go to that subject's subscriptions; events no token owns (inbound messages) go to
    // every subscription that asked for the type.
    matchingSubs: db.prepare(
      `SELECT s.id FROM webhook_subscriptions s, json_each(s.events) e
       WHERE e.value = @type AND (@subject IS NULL OR s.subject = @subject)`,
    ),
    insertEvent: db.prepare(
      `INSERT OR IGNORE INTO webhook_events (id, dedupe_key, type, subject, body, occurred_at)
       VALUES (@id, @dedupeKey, @type, @subject, @body, @occurredAt)`,
    ),
    insertDelivery: db.prepare(
      `INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, status, next_attempt_at, window_started_at, created_at, updated_at)
       VALUES (@id, @subscriptionId, @eventId, @type, 'pending', @now, @now, @now, @now)`,
    ),
    claimDue: db.prepare(
      `UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1, lease_until = @leaseUntil, updated_at = @now
       WHERE id IN (
         SELECT id FROM (
           SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= @now
           ORDER BY next_attempt_at LIMIT @limit)
         UNION ALL
         SELECT id FROM (
           SELECT id FROM webhook_deliveries WHERE status = 'delivering' AND lease_until <= @now
           ORDER BY lease_until LIMIT @limit)
         LIMIT @limit)
       RETURNING *`,
    ),
    dueDetails: db.prepare(
      `SELECT s.url, s.secret, e.body FROM webhook_deliveries d
       JOIN webhook_subscriptions s ON s.id = d.subscription_id
       JOIN webhook_events e ON e.id = d.event_id
       WHERE d.id = ?`,
    ),
    markDelivered: db.prepare(
      `UPDATE webhook_deliveries SET status = 'delivered', lease_until = NULL, last_status_code = @code,
         last_error = NULL, delivered_at = @now, updated_at = @now
       WHERE id = @id AND status = 'delivering'`,
    ),
    markRetry: db.prepare(
      `UPDATE webhook_deliveries SET status = 'pending', lease_until = NULL, next_attempt_at = @nextAt,
         last_status_code = @code, last_error = @error, updated_at = @now
       WHERE id = @id AND status = 'delivering'`,
    ),
    markFailed: db.prepare(
      `UPDATE webhook_deliveries SET status = 'failed', lease_until = NULL, last_status_code = @code,
         last_error = @error, updated_at = @now
       WHERE id = @id AND status = 'delivering'`,
    ),
    listDeliveries: db.prepare(
      `SELECT * FROM webhook_deliveries
       WHERE subscription_id = @subscriptionId AND (@status IS NULL OR status = @status)
         AND (@before IS NULL OR id < @before)
       ORDER BY id DESC LIMIT @limit`,
    ),
    redeliver: db.prepare(
      `UPDATE webhook_deliveries SET status = 'pending', lease_until = NULL, attempts = 0, next_attempt_at = @now,
         window_started_at = @now, updated_at = @now
       WHERE id = @id AND subscription_id = @subscriptionId AND status IN ('delivered', 'failed', 'pending')`,
    ),
    pruneDeliveries: db.prepare(
      "DELETE FROM webhook_deliveries WHERE status IN ('delivered', 'failed') AND updated_at < ?",
    ),
    pruneEvents: db.prepare(
      `DELETE FROM webhook_events WHERE occurred_at < ?
         AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)`,
    ),
    ownerByProviderId: db.prepare(
      "SELECT id, subject, number_id AS numberId FROM messages WHERE provider_message_id = ?",
    ),
    ownerById: db.prepare(
      "SELECT id, subject, number_id AS numberId, provider_message_id FROM messages WHERE id = ?",
    ),
  };

  return {
    createWebhook(sub, maxPerSubject) {
      return batcher.write(() => {
        if ((s.countSubs.get(sub.subject) as number) >= maxPerSubject) return false;
        s.insertSub.run({
          id: sub.id,
          subject: sub.subject,
          url: sub.url,
          events: JSON.stringify(sub.events),
          secret: sub.sealedSecret,
          createdAt: sub.createdAt,
          updatedAt: sub.updatedAt,
        });
        return true;
      });
    },
    async listWebhooks(subject) {
      return (s.listSubs.all(subject) as SubscriptionRow[]).map(toSubscription);
    },
    async getWebhook(subject, id) {
      const row = s.getSub.get(subject, id) as SubscriptionRow | undefined;
      return row ? toSubscription(row) : undefined;
    },
    updateWebhook(subject, id, patch, now) {
      return batcher.write(() => {
        const row = s.getSub.get(subject, id) as SubscriptionRow | undefined;
        if (!row) return undefined;
        const current = toSubscription(row);
        const next = { ...current, ...patch, updatedAt: now };
        s.updateSub.run({ subject, id, url: next.url, events: JSON.stringify(next.events), now });
        return next;
      });
    },
    deleteWebhook(subject, id) {
      return batcher.write(() => s.deleteSub.run(subject, id).changes === 1);
    },

    recordEvent(event: PublishedEvent, body, now) {
      return batcher.write(() => {
        const subs = s.matchingSubs.all({ type: event.type, subject: event.subject ?? null }) as Array<{
          id: string;
        }>;
        // Nobody listens: nothing to keep (a gateway without webhooks stores no events at all).
        if (subs.length === 0) return 0;
        const inserted = s.insertEvent.run({
          id: event.id,
          dedupeKey: event.dedupeKey ?? null,
          type: event.type,
          subject: event.subject ?? null,
          body,
          occurredAt: event.occurredAt,
        });
        if (inserted.changes === 0) return 0;
        for (const sub of subs) {
          s.insertDelivery.run({
            id: uuidv7(now),
            subscriptionId: sub.id,
            eventId: event.id,
            type: event.type,
            now,
          });
        }
        return subs.length;
      });
    },
    claimDueDeliveries(now, limit, leaseUntil) {
      return batcher.write(() => {
        const rows = s.claimDue.all({ now, limit, leaseUntil }) as DeliveryRow[];
        const due: DueDelivery[] = [];
        for (const row of rows) {
          const details = s.dueDetails.get(row.id) as
            | { url: string; secret: Buffer; body: string }
            | undefined;
          if (details)
            due.push({
              ...toDelivery(row),
              url: details.url,
              sealedSecret: details.secret,
              body: details.body,
            });
        }
        return due.sort((a, b) => a.nextAttemptAt - b.nextAttemptAt);
      }, BOOKKEEPING);
    },
    markDelivered(id, code, now) {
      return batcher.write(() => void s.markDelivered.run({ id, code, now }), BOOKKEEPING);
    },
    markDeliveryRetry(id, nextAt, code, error, now) {
      return batcher.write(() => void s.markRetry.run({ id, nextAt, code, error, now }), BOOKKEEPING);
    },
    markDeliveryFailed(id, code, error, now) {
      return batcher.write(() => void s.markFailed.run({ id, code, error, now }), BOOKKEEPING);
    },
    async listDeliveries(subject, subscriptionId, options) {
      if (!s.getSub.get(subject, subscriptionId)) return undefined;
      return (
        s.listDeliveries.all({
          subscriptionId,
          status: options.status ?? null,
          before: options.before ?? null,
          limit: options.limit,
        }) as DeliveryRow[]
      ).map(toDelivery);
    },
    redeliver(subject, subscriptionId, deliveryId, now) {
      return batcher.write(() => {
        if (!s.getSub.get(subject, subscriptionId)) return false;
        return s.redeliver.run({ id: deliveryId, subscriptionId, now }).changes === 1;
      });
    },
    pruneWebhookHistory(before) {
      return batcher.write(() => {
        const deliveries = s.pruneDeliveries.run(before).changes;
        s.pruneEvents.run(before);
        return deliveries;
      }, BOOKKEEPING);
    },
    async messageOwner(providerMessageId, ourMessageId) {
      type Owner = { id: string; subject: string; numberId: string | null };
      const row = s.ownerByProviderId.get(providerMessageId) as Owner | undefined;
      if (row) return row;
      if (!ourMessageId) return undefined;
      const candidate = s.ownerById.get(ourMessageId) as
        | (Owner & { provider_message_id: string | null })
        | undefined;
      if (!candidate || (candidate.provider_message_id ?? providerMessageId) !== providerMessageId)
        return undefined;
      return { id: candidate.id, subject: candidate.subject, numberId: candidate.numberId };
    },
  };
}
