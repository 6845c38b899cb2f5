import type { FastifyBaseLogger } from "fastify";
import type { Sealer } from "../crypto/sealer.js";
import { backoffDelay } from "../queue/backoff.js";
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

/** The associated data a subscription's sealed secret is bound to. */
/** Settled deliveries stay visible (and redeliverable) this long. */
const HISTORY_RETENTION_MS = 30 * 24 * 3_600_000;
const HOUSEKEEPING_INTERVAL_MS = 3_600_000;

export const secretAssociatedData = (subscriptionId: string) => `webhook-subscription:${subscriptionId}`;

export class WebhookDispatcher {
  private running = false;
  private readonly inFlight = new Set<Promise<void>>();
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly now: () => number;
  private lastHousekeeping = 0;

  constructor(private readonly options: WebhookDispatcherOptions) {
    this.now = options.now ?? Date.now;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  notify(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    await Promise.allSettled([...this.inFlight]);
  }

  private async run(): Promise<void> {
    const o = this.options;
    while (this.running) {
      let claimed: DueDelivery[] = [];
      const free = o.concurrency - this.inFlight.size;
      if (free > 0) {
        try {
          const now = this.now();
          // The lease outlives one attempt (resolution + timeout) with room to record its outcome.
          claimed = await o.store.claimDueDeliveries(now, free, now + 2 * o.timeoutMs + 10_000);
          if (now - this.lastHousekeeping > HOUSEKEEPING_INTERVAL_MS) {
            this.lastHousekeeping = now;
            await o.store.pruneWebhookHistory(now - HISTORY_RETENTION_MS);
          }
        } catch (error) {
          o.log.error({ err: error }, "webhooks: claiming failed");
        }
      }
      for (const delivery of claimed) {
        const task = this.attempt(delivery)
          .catch((error: unknown) =>
            o.log.error({ err: error, deliveryId: delivery.id }, "webhooks: recording an attempt failed"),
          )
          .finally(() => {
            this.inFlight.delete(task);
            this.wake?.();
          });
        this.inFlight.add(task);
      }
      if (claimed.length === 0 || this.inFlight.size >= o.concurrency) await this.sleep(o.pollIntervalMs);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
    });
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
      target = await checkWebhookTarget(delivery.url, o.policy, o.resolve);
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
