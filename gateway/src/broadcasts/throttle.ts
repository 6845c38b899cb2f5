// The broadcast rate: a token bucket whose rate follows AIMD. A throughput refusal (130429 / HTTP 429) halves
// the rate, at most once per second (the refusals of requests already in flight describe the same moment);
// each calm second then adds back a twentieth of the configured rate, so a halved rate recovers in about ten
// seconds. The bucket holds at most a tenth of a second of tokens: an idle broadcast never bursts.

const CUT_COOLDOWN_MS = 1_000;
const RECOVERY_FRACTION_PER_SECOND = 1 / 20;
const BURST_SECONDS = 0.1;
const MIN_RATE = 1;

export class AdaptiveThrottle {
  private rate: number;
  private tokens = 0;
  private lastRefill: number;
  private lastCut = Number.NEGATIVE_INFINITY;
  private cuts = 0;

  constructor(
    private readonly maxRate: number,
    now: number,
  ) {
    this.rate = maxRate;
    this.lastRefill = now;
  }

  /** Messages per second allowed right now. */
  get currentRate(): number {
    return this.rate;
  }

  /** How many times the rate was cut since start. */
  get throttledCount(): number {
    return this.cuts;
  }

  /** Adds the tokens earned since the last call (and recovers the rate); returns the whole tokens available. */
  refill(now: number): number {
    const elapsed = Math.max(0, now - this.lastRefill) / 1000;
    this.lastRefill = now;
    if (this.rate < this.maxRate && now - this.lastCut >= CUT_COOLDOWN_MS) {
      this.rate = Math.min(this.maxRate, this.rate + this.maxRate * RECOVERY_FRACTION_PER_SECOND * elapsed);
    }
    this.tokens = Math.min(this.tokens + this.rate * elapsed, Math.max(1, this.rate * BURST_SECONDS));
    return Math.floor(this.tokens);
  }

  take(count: number): void {
    this.tokens = Math.max(0, this.tokens - count);
  }

  /** Nothing to send: drop the tokens so that work arriving later does not start with a burst. */
  drain(): void {
    this.tokens = 0;
  }

  onThrottled(now: number): void {
    if (now - this.lastCut < CUT_COOLDOWN_MS) return;
    this.lastCut = now;
    this.cuts++;
    this.rate = Math.max(MIN_RATE, this.rate / 2);
  }
}
