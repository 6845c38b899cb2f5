import type { FastifyBaseLogger } from "fastify";
import { WakeableSleep } from "./wakeable-sleep.js";

// The loop shared by the persisted queues (the outbox, outbound webhook deliveries): claim what is due with a
// lease, up to the free slots; handle each claimed item concurrently; when nothing is due or every slot is busy,
// sleep until the poll interval passes or somebody calls notify() (new work, or a slot freed). What a claim
// and a handler do, and how a lease protects against a crash, is the queue's own business.

export interface LeaseWorkerOptions<T> {
  /** For log messages: "outbox", "webhooks". */
  name: string;
  concurrency: number;
  pollIntervalMs: number;
  log: FastifyBaseLogger;
  /** Claims up to `limit` due items. A failure is logged and retried after the poll interval. */
  claim(limit: number): Promise<T[]>;
  /** Handles one claimed item, recording its outcome. A rejection is logged with `describe(item)`. */
  handle(item: T): Promise<void>;
  describe(item: T): Record<string, unknown>;
}

export class LeaseWorker<T> {
  private running = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly pause = new WakeableSleep();
  private loop: Promise<void> | undefined;
  /**
   * Whether a claim now could find something: new work was notified, or the last claim filled every free
   * slot. A finished item wakes the loop only then, so an idle queue is not asked again after every item
   * (rows that become due later, retries, are found by the poll).
   */
  private moreMayBeDue = true;

  constructor(private readonly options: LeaseWorkerOptions<T>) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** New work was committed, or a slot freed: claim now instead of at the next poll. */
  notify(): void {
    this.moreMayBeDue = true;
    this.pause.wake();
  }

  /** Stops claiming, lets the items in flight finish (their outcome is recorded), then resolves. */
  async stop(): Promise<void> {
    this.running = false;
    this.pause.wake();
    await this.loop;
    await Promise.allSettled([...this.inFlight]);
  }

  private async run(): Promise<void> {
    const o = this.options;
    while (this.running) {
      let claimed: T[] = [];
      const free = o.concurrency - this.inFlight.size;
      if (free > 0) {
        this.moreMayBeDue = false;
        try {
          claimed = await o.claim(free);
          if (claimed.length === free) this.moreMayBeDue = true;
        } catch (error) {
          o.log.error({ err: error }, `${o.name}: claiming failed`);
        }
      }
      for (const item of claimed) {
        const task = o
          .handle(item)
          .catch((error: unknown) =>
            o.log.error({ err: error, ...o.describe(item) }, `${o.name}: handling failed`),
          )
          .finally(() => {
            this.inFlight.delete(task);
            if (this.moreMayBeDue) this.pause.wake();
          });
        this.inFlight.add(task);
      }
      if (!this.moreMayBeDue || this.inFlight.size >= o.concurrency) await this.pause.sleep(o.pollIntervalMs);
    }
  }
}
