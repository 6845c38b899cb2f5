import type { FastifyBaseLogger } from "fastify";
import type { Sealer } from "../crypto/sealer.js";
import { fillSecret, type OutgoingMessage } from "../messages.js";
import type { Metrics } from "../metrics.js";
import type { ClaimedMessage, Store } from "../store/store.js";
import type { SendOutcome, Transport } from "../transport/transport.js";
import { backoffDelay } from "./backoff.js";
import { LeaseWorker } from "./lease-worker.js";
import {
  namesUploadedMedia,
  type ResolvedMessage,
  resolveMedia,
  resolveReferences,
  type UploadedMediaLookup,
} from "./references.js";

// The outbox worker. Routes commit a message to the store before answering 202; this worker claims due rows
// (lowest priority number first), sends them and records the outcome.
//
// Exactly once, as far as the Cloud API allows (it has no idempotency key). A claim is committed before the
// request leaves, as `sending` with a lease of sendTimeout + inDoubtGrace. The crash window is between Meta
// accepting a request and our commit of its answer: if the process dies there (or the answer is lost to a
// timeout or a reset), the row stays `sending`. It is then *not* re-sent at once: every request carries our
// id in `biz_opaque_callback_data`, which Meta echoes in its status webhooks, and a status for that id during
// the grace period proves the send and settles the row. Only when the lease ends without such proof is the
// message sent again. So: exactly once whenever Meta's webhooks reach us within the grace period, at least
// once otherwise, never lost; an accepted message is never dropped to avoid a duplicate. Errors known to be
// raised before any byte left (connection refused, DNS) are plain retries.

export interface RateLimiter {
  /**
   * When `message` may be sent: undefined for now, or a promise that resolves then (throttled bulk sends). Most
   * messages are not throttled; they do not pay for a promise.
   */
  acquire(message: ClaimedMessage): Promise<void> | undefined;
  /** Told about throughput refusals (130429 / 429) so it can slow down. */
  onThrottled?(message: ClaimedMessage): void;
}

export interface OutboxOptions {
  store: Store;
  transport: Transport;
  log: FastifyBaseLogger;
  metrics: Metrics;
  concurrency: number;
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  sendTimeoutMs: number;
  inDoubtGraceMs: number;
  pollIntervalMs: number;
  /** Opens sealed secrets (OTP codes) right before sending. */
  sealer: Sealer;
  limiter?: RateLimiter;
  /** Maps our ids of uploaded media (POST /v1/media) to Meta's before sending. */
  uploadedMedia?: UploadedMediaLookup;
  now?: () => number;
}

const IDEMPOTENCY_RETENTION_MS = 24 * 3_600_000;
const HOUSEKEEPING_INTERVAL_MS = 60_000;

export class OutboxWorker {
  private readonly worker: LeaseWorker<ClaimedMessage>;
  /** The sends in flight, aborted together by abort(); a set, not a listener per send on a shared signal. */
  private readonly sending = new Set<AbortController>();
  /** Set by abort(): a send that starts afterwards is aborted at once. */
  private abortReason: unknown;
  private lastHousekeeping = 0;
  private readonly now: () => number;

  constructor(private readonly options: OutboxOptions) {
    this.now = options.now ?? Date.now;
    this.worker = new LeaseWorker({
      name: "outbox",
      concurrency: options.concurrency,
      pollIntervalMs: options.pollIntervalMs,
      log: options.log,
      claim: async (limit) => {
        const now = this.now();
        const claimed = await options.store.claimDueMessages(
          now,
          limit,
          now + options.sendTimeoutMs + options.inDoubtGraceMs,
        );
        await this.housekeeping(now);
        return claimed;
      },
      handle: (record) => this.deliver(record),
      describe: (record) => ({ messageId: record.id }),
    });
  }

  start(): void {
    this.worker.start();
  }

  /** Called after a commit so new messages go out without waiting for the next poll. */
  notify(): void {
    this.worker.notify();
  }

  /** Stops claiming, lets in-flight sends finish (their outcome is recorded), then resolves. */
  stop(): Promise<void> {
    return this.worker.stop();
  }

  /** Aborts in-flight sends too (their rows stay in doubt until their lease ends). For shutdown deadlines. */
  abort(): void {
    this.abortReason ??= new DOMException("the outbox is stopping", "AbortError");
    for (const send of this.sending) send.abort(this.abortReason);
  }

  private async housekeeping(now: number): Promise<void> {
    if (now - this.lastHousekeeping < HOUSEKEEPING_INTERVAL_MS) return;
    this.lastHousekeeping = now;
    await this.options.store.pruneIdempotencyKeys(now - IDEMPOTENCY_RETENTION_MS);
  }

  private async deliver(record: ClaimedMessage): Promise<void> {
    const o = this.options;
    let outcome: SendOutcome;
    try {
      const throttled = o.limiter?.acquire(record);
      if (throttled) await throttled;
      const message = record.secret
        ? fillSecret(record.message, o.sealer.open(record.secret, record.id))
        : record.message;
      // Most messages name neither another message nor an uploaded medium: they skip both look-ups' promises.
      const resolved =
        message.context || message.type === "reaction" || namesUploadedMedia(message)
          ? await this.resolve(message)
          : { kind: "ready" as const, message };
      outcome =
        resolved.kind === "ready"
          ? await this.sendWithTimeout(resolved.message, record.id, record.numberId)
          : resolved.outcome;
    } catch (error) {
      o.log.error({ err: error, messageId: record.id }, "outbox: transport threw");
      outcome = { kind: "in_doubt", code: "transport_error", message: "transport error" };
    }
    o.metrics.outboxSends.inc({ outcome: outcome.kind });
    const now = this.now();
    try {
      await this.record(record, outcome, now);
    } catch (error) {
      o.log.error({ err: error, messageId: record.id }, "outbox: recording the outcome failed");
    }
  }

  /** Maps the ids of ours a message names (quoted or reacted-to messages, uploaded media) to Meta's. */
  private async resolve(message: OutgoingMessage): Promise<ResolvedMessage> {
    const referenced = await resolveReferences(message, this.options.store);
    return referenced.kind === "ready" && this.options.uploadedMedia
      ? resolveMedia(referenced.message, this.options.uploadedMedia)
      : referenced;
  }

  /**
   * One send, aborted by its timeout or by `abort()`. Not `AbortSignal.any([stop, AbortSignal.timeout()])` with a
   * long-lived stop signal: on Node 20 every composite signal stays referenced by that signal and its timer lives
   * for the whole timeout, so at 1,000 msg/s the heap grew by ~100 MB during a broadcast.
   */
  private async sendWithTimeout(
    message: OutgoingMessage,
    messageId: string,
    numberId: string | null,
  ): Promise<SendOutcome> {
    const send = new AbortController();
    const timer = setTimeout(
      () => send.abort(new DOMException("the send timed out", "TimeoutError")),
      this.options.sendTimeoutMs,
    );
    if (this.abortReason !== undefined) send.abort(this.abortReason);
    this.sending.add(send);
    try {
      return await this.options.transport.send(
        message,
        numberId ? { messageId, signal: send.signal, numberId } : { messageId, signal: send.signal },
      );
    } finally {
      clearTimeout(timer);
      this.sending.delete(send);
    }
  }

  private async record(record: ClaimedMessage, outcome: SendOutcome, now: number): Promise<void> {
    const o = this.options;
    const log = { messageId: record.id, attempt: record.attempts };
    switch (outcome.kind) {
      case "accepted":
        await o.store.markSent(record, outcome.providerMessageId, now);
        o.log.info(log, "outbox: sent");
        return;
      case "permanent":
        await o.store.markFailed(record, { code: outcome.code, message: outcome.message }, now);
        o.log.warn({ ...log, errorCode: outcome.code }, "outbox: refused by the provider");
        return;
      case "retryable": {
        if (outcome.code === "130429" || outcome.code === "http_429") o.limiter?.onThrottled?.(record);
        const error = { code: outcome.code, message: outcome.message };
        if (record.attempts >= o.maxAttempts) {
          await o.store.markFailed(record, error, now);
          o.log.warn({ ...log, errorCode: outcome.code }, "outbox: giving up after the last attempt");
          return;
        }
        const delay = Math.max(
          outcome.minDelayMs ?? 0,
          backoffDelay(record.attempts, o.backoffBaseMs, o.backoffMaxMs),
        );
        await o.store.markRetry(record, now + delay, error, now);
        o.log.info({ ...log, errorCode: outcome.code, delayMs: delay }, "outbox: will retry");
        return;
      }
      case "in_doubt":
        // Left `sending`: a status webhook may still prove the send; otherwise the lease ends and it is retried.
        o.log.warn(
          { ...log, errorCode: outcome.code },
          "outbox: outcome unknown, waiting for proof before resending",
        );
        return;
    }
  }
}
