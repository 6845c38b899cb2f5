import type { FastifyBaseLogger } from "fastify";
import type { EventSink } from "../events.js";
import { PRIORITY } from "../messages.js";
import type { RateLimiter } from "../queue/outbox.js";
import { WakeableSleep } from "../queue/wakeable-sleep.js";
import type { BroadcastRecord, BroadcastStore } from "../store/broadcasts.js";
import { AdaptiveThrottle } from "./throttle.js";

/** A sending number's pace: the adaptive throttle for cloud numbers, a slower jittered one for web numbers. */
export interface BroadcastPace {
  readonly currentRate: number;
  refill(now: number): number;
  take(count: number): void;
  drain(): void;
  onThrottled(now: number): void;
  /** At most this many bulk messages per rolling 24 hours from the number (web numbers). */
  readonly dailyCap?: number;
}

const DAY_MS = 86_400_000;

// The broadcast sender. Broadcast recipients wait in their own table; at the allowed rate this loop turns the
// next few into outbox rows (priority `bulk`), each batch in the transaction that advances the broadcast's
// cursor, and wakes the outbox. So the outbox holds at most about a second of bulk work, memory does not grow
// with the number of recipients, and the outbox's claim order (interactive first) lets single messages and
// OTPs overtake a running broadcast: at any moment only a handful of bulk rows stand before them.
//
// Exactly once: a recipient becomes one outbox row in the same commit as the cursor that passes it; from there
// the outbox's claims, leases and in-doubt grace (see queue/outbox.ts) send it once. A SIGKILL at any moment
// leaves either the recipient before the cursor with its row, or after it without one.

export interface BroadcastSenderOptions {
  store: BroadcastStore;
  events: EventSink;
  log: FastifyBaseLogger;
  ratePerSecond: number;
  pairIntervalMs: number;
  /** Wakes the outbox after rows were added. */
  onMaterialised: () => void;
  tickMs?: number;
  idlePollMs?: number;
  now?: () => number;
  /**
   * The pace of a sending number's broadcasts (null: the default number); default: an adaptive throttle at
   * `ratePerSecond`. Each number has its own: Meta's throughput limit is per number.
   */
  paceFor?: (numberId: string | null, now: number) => BroadcastPace;
}

const DEFAULT_TICK_MS = 20;
const DEFAULT_IDLE_POLL_MS = 1_000;
const COMPLETION_CHECK_MS = 250;
/** Bulk rows allowed in the outbox at once: about a second of sending, never fewer than this. */
const MIN_WINDOW = 100;

export class BroadcastSender {
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly pause = new WakeableSleep();
  private readonly paces = new Map<string | null, BroadcastPace>();
  private readonly now: () => number;
  private lastCompletionCheck = 0;

  constructor(private readonly options: BroadcastSenderOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The default number's current rate (messages per second). */
  get currentRate(): number {
    return this.pace(null).currentRate;
  }

  private pace(numberId: string | null): BroadcastPace {
    let pace = this.paces.get(numberId);
    if (!pace) {
      const now = this.now();
      pace = this.options.paceFor?.(numberId, now) ?? new AdaptiveThrottle(this.options.ratePerSecond, now);
      this.paces.set(numberId, pace);
    }
    return pace;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.pause.wake();
    await this.loop;
  }

  /** A broadcast was created: start without waiting for the idle poll. */
  notify(): void {
    this.pause.wake();
  }

  /** The outbox's rate-limiter hook: throughput refusals of any message slow broadcasts down. */
  limiter(inner?: RateLimiter): RateLimiter {
    return {
      acquire: (message) => inner?.acquire(message),
      onThrottled: (message) => {
        // Throughput is per number: only the refused message's number slows down.
        const pace = this.pace(message.numberId ?? null);
        const before = pace.currentRate;
        pace.onThrottled(this.now());
        if (pace.currentRate !== before) {
          this.options.log.warn(
            { ratePerSecond: Math.round(pace.currentRate), numberId: message.numberId ?? undefined },
            "broadcasts: throughput limit reached, slowing down",
          );
        }
        inner?.onThrottled?.(message);
      },
    };
  }

  private async run(): Promise<void> {
    const o = this.options;
    const tickMs = o.tickMs ?? DEFAULT_TICK_MS;
    while (this.running) {
      let active = false;
      try {
        active = await this.tick();
      } catch (error) {
        o.log.error({ err: error }, "broadcasts: sending step failed");
      }
      await this.pause.sleep(active ? tickMs : (o.idlePollMs ?? DEFAULT_IDLE_POLL_MS));
    }
  }

  /** One step: materialise what the rate allows, finish completed broadcasts; true while work remains. */
  private async tick(): Promise<boolean> {
    const o = this.options;
    const now = this.now();
    const active = new Set(await o.store.activeBroadcastNumbers());
    for (const [numberId, pace] of this.paces) {
      if (active.has(numberId)) continue;
      pace.refill(now);
      pace.drain();
    }
    if (active.size === 0) return false;
    for (const numberId of active) {
      const pace = this.pace(numberId);
      const allowed = pace.refill(now);
      if (allowed <= 0) continue;
      const window = Math.max(MIN_WINDOW, Math.ceil(pace.currentRate));
      const room = window - (await o.store.outstandingBulk(PRIORITY.bulk, numberId));
      let limit = Math.min(allowed, room);
      if (pace.dailyCap !== undefined && limit > 0) {
        const sent = await o.store.bulkSentSince(numberId, now - DAY_MS);
        limit = Math.min(limit, pace.dailyCap - sent);
      }
      if (limit <= 0) continue;
      const made = await o.store.materialise({
        now,
        limit,
        pairIntervalMs: o.pairIntervalMs,
        priority: PRIORITY.bulk,
        numberId,
      });
      pace.take(made);
      if (made > 0) o.onMaterialised();
    }
    if (now - this.lastCompletionCheck >= COMPLETION_CHECK_MS) {
      this.lastCompletionCheck = now;
      for (const broadcast of await o.store.finishedBroadcasts()) await this.complete(broadcast, now);
    }
    return true;
  }

  /**
   * Publishes first, then marks completed: a kill between the two publishes again after the restart, which
   * the sink drops by its dedupe key; never zero times.
   */
  private async complete(broadcast: BroadcastRecord, now: number): Promise<void> {
    const o = this.options;
    await o.events.publish({
      type: "broadcast.completed",
      subject: broadcast.subject,
      occurredAt: now,
      dedupeKey: `broadcast.completed:${broadcast.id}`,
      data: {
        id: broadcast.id,
        number_id: broadcast.numberId ?? "default",
        name: broadcast.name,
        total: broadcast.total,
        sent: broadcast.sent,
        delivered: broadcast.delivered,
        read: broadcast.read,
        failed: broadcast.failed,
      },
    });
    if (await o.store.markCompleted(broadcast.id, now)) {
      o.log.info(
        { broadcastId: broadcast.id, total: broadcast.total, failed: broadcast.failed },
        "broadcasts: completed",
      );
    }
  }
}
