import type { EventType, GatewayEvent } from "../events.js";

// Persistence of outbound webhook subscriptions, the events published to them and one delivery per
// (event, subscription): the queue the dispatcher works through.

export interface WebhookSubscription {
  id: string;
  /** The token `sub` that created it: it receives that sub's events and the gateway-wide ones (inbound). */
  subject: string;
  url: string;
  events: EventType[];
  /** The signing secret, sealed (AES-GCM, the row id as associated data). */
  sealedSecret: Buffer;
  createdAt: number;
  updatedAt: number;
}

export type DeliveryStatus = "pending" | "delivering" | "delivered" | "failed";

export interface WebhookDelivery {
  id: string;
  subscriptionId: string;
  eventId: string;
  eventType: EventType;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: number;
  /** Start of the current retry budget (creation, or the last redeliver call). */
  windowStartedAt: number;
  lastStatusCode: number | null;
  lastError: string | null;
  deliveredAt: number | null;
  createdAt: number;
  updatedAt: number;
}

/** A claimed delivery with what sending it needs. */
export interface DueDelivery extends WebhookDelivery {
  url: string;
  sealedSecret: Buffer;
  /** The exact bytes to send (and sign): the same on every attempt. */
  body: string;
}

export interface PublishedEvent extends GatewayEvent {
  id: string;
  /** Producers that may publish the same fact twice (Meta re-deliveries) give a key; the second is ignored. */
  dedupeKey?: string;
}

export interface WebhooksStore {
  createWebhook(subscription: WebhookSubscription, maxPerSubject: number): Promise<boolean>;
  listWebhooks(subject: string): Promise<WebhookSubscription[]>;
  getWebhook(subject: string, id: string): Promise<WebhookSubscription | undefined>;
  updateWebhook(
    subject: string,
    id: string,
    patch: { url?: string; events?: EventType[] },
    now: number,
  ): Promise<WebhookSubscription | undefined>;
  deleteWebhook(subject: string, id: string): Promise<boolean>;

  /**
   * Stores the event and one pending delivery per matching subscription in one transaction; resolves with the
   * number of deliveries (0 as well when the dedupe key was seen before).
   */
  recordEvent(event: PublishedEvent, body: string, now: number): Promise<number>;
  claimDueDeliveries(now: number, limit: number, leaseUntil: number): Promise<DueDelivery[]>;
  markDelivered(id: string, statusCode: number, now: number): Promise<void>;
  markDeliveryRetry(
    id: string,
    nextAttemptAt: number,
    statusCode: number | null,
    error: string,
    now: number,
  ): Promise<void>;
  markDeliveryFailed(id: string, statusCode: number | null, error: string, now: number): Promise<void>;
  listDeliveries(
    subject: string,
    subscriptionId: string,
    options: { status?: DeliveryStatus; limit: number; before?: string },
  ): Promise<WebhookDelivery[] | undefined>;
  /** Puts a delivery back in the queue with a fresh retry budget; false when it is not the subject's. */
  redeliver(subject: string, subscriptionId: string, deliveryId: string, now: number): Promise<boolean>;

  /** Deletes settled deliveries (delivered, failed) last changed before `before`, and events left without any. */
  pruneWebhookHistory(before: number): Promise<number>;

  /** The owner of an outgoing message, by Meta's id or ours: status events go to that owner. */
  messageOwner(
    providerMessageId: string,
    ourMessageId?: string,
  ): Promise<{ id: string; subject: string; numberId: string | null } | undefined>;
}
