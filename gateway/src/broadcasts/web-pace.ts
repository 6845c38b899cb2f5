import type { BroadcastPace } from "./sender.js";

// The pace of a WhatsApp Web number's broadcasts. WhatsApp bans numbers that send like machines: many messages
// at a steady rhythm, to people who never wrote. So one message at a time, each after a random pause between
// `minMs` and `maxMs` (never a fixed interval), and at most `dailyCap` per rolling 24 hours (the sender counts
// those in the store, so every gateway instance sees the same count).

export class JitteredPace implements BroadcastPace {
  private nextAt: number;
  private lastRefill: number;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    readonly dailyCap: number,
    now: number,
    private readonly random: () => number = Math.random,
  ) {
    this.nextAt = now;
    this.lastRefill = now;
  }

  get currentRate(): number {
    return 2000 / (this.minMs + this.maxMs);
  }

  refill(now: number): number {
    this.lastRefill = now;
    return now >= this.nextAt ? 1 : 0;
  }

  take(count: number): void {
    if (count <= 0) return;
    this.nextAt = this.lastRefill + this.minMs + this.random() * Math.max(0, this.maxMs - this.minMs);
  }

  drain(): void {}

  /** WhatsApp pushed back: wait the longest pause before the next one. */
  onThrottled(now: number): void {
    this.nextAt = Math.max(this.nextAt, now + this.maxMs);
  }
}
