import type { FastifyBaseLogger } from "fastify";
import type { Sealer } from "../crypto/sealer.js";
import { backoffDelay } from "../queue/backoff.js";
import { LeaseWorker } from "../queue/lease-worker.js";
import type { Store } from "../store/store.js";
import type { DueDelivery } from "../store/webhooks.js";
import { type DeliveryOutcome, postSigned } from "./delivery.js";
import { SIGNATURE_HEADER, signatureHeader } from "./signing.js";
import {
  type CheckedTarget,
  checkWebhookTarget,
  type HostResolver,
  RefusedUrl,
  type UrlPolicy,
} from "./ssrf.js";

// Works through the persisted delivery queue: claims due deliveries with a lease (a delivery whose worker died
// is claimed again when the lease ends: at-least-once), checks the URL again (DNS may have changed since the
// subscription was made), posts the signed body, and records the outcome. Failures are retried with
// exponential backoff and jitter until the retry window (about 24 h) or the attempt budget is spent; the
// delivery is then `failed` and can be sent again with the redeliver call.

export interface WebhookDispatcherOptions {
  store: Store;
  sealer: Sealer;
  log: FastifyBaseLogger;
  policy: UrlPolicy;
  resolve: HostResolver;
  timeoutMs: number;
  concurrency: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  retryWindowMs: number;
  maxAttempts: number;
  pollIntervalMs: number;
  now?: () => number;
}

/** Settled deliveries stay visible (and redeliverable) this long. */
const HISTORY_RETENTION_MS = 30 * 24 * 3_600_000;
const HOUSEKEEPING_INTERVAL_MS = 3_600_000;

/** The associated data a subscription's sealed secret is bound to. */
export const secretAssociatedData = (subscriptionId: string) => `webhook-subscription:${subscriptionId}`;

export class WebhookDispatcher {
  private readonly worker: LeaseWorker<DueDelivery>;
  private readonly now: () => number;
  private lastHousekeeping = 0;

  constructor(private readonly options: WebhookDispatcherOptions) {
    this.now = options.now ?? Date.now;
    this.worker = new LeaseWorker({
      name: "webhooks",
      concurrency: options.concurrency,
      pollIntervalMs: options.pollIntervalMs,
      log: options.log,
      claim: async (limit) => {
        const now = this.now();
        // The lease outlives one attempt (resolution + timeout) with room to record its outcome.
        const claimed = await options.store.claimDueDeliveries(
          now,
          limit,
          now + 2 * options.timeoutMs + 10_000,
        );
        if (now - this.lastHousekeeping > HOUSEKEEPING_INTERVAL_MS) {
          this.lastHousekeeping = now;
          await options.store.pruneWebhookHistory(now - HISTORY_RETENTION_MS);
        }
        return claimed;
      },
      handle: (delivery) => this.attempt(delivery),
      describe: (delivery) => ({ deliveryId: delivery.id }),
    });
  }

  start(): void {
    this.worker.start();
  }

  /** An event was recorded: deliver it without waiting for the next poll. */
  notify(): void {
    this.worker.notify();
  }

  /** Stops claiming, lets the deliveries in flight finish (their outcome is recorded), then resolves. */
  stop(): Promise<void> {
    return this.worker.stop();
  }

  /** One attempt's outcome; a refused URL or a secret that no longer opens is a failed attempt like any other. */
  private async send(delivery: DueDelivery): Promise<DeliveryOutcome> {
    const o = this.options;
    let secret: string;
    try {
      secret = o.sealer.open(delivery.sealedSecret, secretAssociatedData(delivery.subscriptionId));
    } catch {
      return {
        ok: false,
        statusCode: null,
        error: "signing secret cannot be opened (was API_SECRET replaced?)",
      };
    }
    let target: CheckedTarget;
    try {
      // Lookups in flight are capped per subscription here (deliveries are bounded by the concurrency too).
      target = await checkWebhookTarget(
        delivery.url,
        o.policy,
        o.resolve,
        `subscription:${delivery.subscriptionId}`,
      );
    } catch (error) {
      if (!(error instanceof RefusedUrl)) throw error;
      return { ok: false, statusCode: null, error: `url refused: ${error.message}` };
    }
    const t = Math.floor(this.now() / 1000);
    return postSigned(
      target,
      delivery.body,
      {
        [SIGNATURE_HEADER]: signatureHeader(secret, delivery.body, t),
        "x-wagate-event-id": delivery.eventId,
        "x-wagate-event-type": delivery.eventType,
        "x-wagate-delivery-id": delivery.id,
      },
      o.timeoutMs,
    );
  }

  private async attempt(delivery: DueDelivery): Promise<void> {
    const o = this.options;
    const outcome = await this.send(delivery);
    const now = this.now();
    if (outcome.ok) {
      await o.store.markDelivered(delivery.id, outcome.statusCode ?? 200, now);
      o.log.debug({ deliveryId: delivery.id, eventId: delivery.eventId }, "webhook delivered");
      return;
    }
    const error = outcome.error ?? "delivery failed";
    const nextAt = now + backoffDelay(delivery.attempts, o.backoffBaseMs, o.backoffMaxMs);
    if (delivery.attempts >= o.maxAttempts || nextAt > delivery.windowStartedAt + o.retryWindowMs) {
      await o.store.markDeliveryFailed(delivery.id, outcome.statusCode, error, now);
      o.log.warn(
        { deliveryId: delivery.id, eventId: delivery.eventId, attempts: delivery.attempts, error },
        "webhook delivery failed for good",
      );
      return;
    }
    await o.store.markDeliveryRetry(delivery.id, nextAt, outcome.statusCode, error, now);
    o.log.info(
      { deliveryId: delivery.id, attempts: delivery.attempts, error },
      "webhook delivery will be retried",
    );
  }
}
