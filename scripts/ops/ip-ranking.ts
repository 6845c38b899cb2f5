import type { AccessEntry } from "./access-log.js";

// Per-client counters over a time window, the thresholds that flag a client, and a deterministic ranking.
// Memory grows with the number of distinct client IPs, never with the size of the log.

export const RANK_KEYS = ["requests", "posts", "4xx", "403", "429", "waf"] as const;
export type RankKey = (typeof RANK_KEYS)[number];

export interface IpCounters {
  ip: string;
  requests: number;
  posts: number;
  status4xx: number;
  status403: number;
  status429: number;
  waf: number;
  firstSeen: number;
  lastSeen: number;
}

/** A client is flagged when a counter is strictly greater than its maximum. */
export type Thresholds = Record<RankKey, number>;

/** Counts over the window; chosen for a window of about an hour (the edge allows 10 r/s per IP). */
export const DEFAULT_THRESHOLDS: Thresholds = {
  requests: 5000,
  posts: 1000,
  "4xx": 200,
  "403": 20,
  "429": 50,
  waf: 5,
};

export interface RankedIp extends IpCounters {
  flagged: boolean;
  /** Which maxima were exceeded, e.g. `429>50`. */
  reasons: string[];
}

export function counterOf(c: IpCounters, key: RankKey): number {
  switch (key) {
    case "requests":
      return c.requests;
    case "posts":
      return c.posts;
    case "4xx":
      return c.status4xx;
    case "403":
      return c.status403;
    case "429":
      return c.status429;
    case "waf":
      return c.waf;
  }
}

export interface Window {
  /** Inclusive, ms since the epoch. */
  since?: number;
  /** Exclusive, ms since the epoch. */
  until?: number;
}

export class IpTally {
  readonly byIp = new Map<string, IpCounters>();
  outsideWindow = 0;

  constructor(private readonly window: Window = {}) {}

  add(entry: AccessEntry): void {
    const { since, until } = this.window;
    if ((since !== undefined && entry.time < since) || (until !== undefined && entry.time >= until)) {
      this.outsideWindow++;
      return;
    }
    let c = this.byIp.get(entry.ip);
    if (!c) {
      c = {
        ip: entry.ip,
        requests: 0,
        posts: 0,
        status4xx: 0,
        status403: 0,
        status429: 0,
        waf: 0,
        firstSeen: entry.time,
        lastSeen: entry.time,
      };
      this.byIp.set(entry.ip, c);
    }
    c.requests++;
    if (entry.method === "POST") c.posts++;
    if (entry.status >= 400 && entry.status < 500) c.status4xx++;
    if (entry.status === 403) c.status403++;
    if (entry.status === 429) c.status429++;
    if (entry.waf) c.waf++;
    if (entry.time < c.firstSeen) c.firstSeen = entry.time;
    if (entry.time > c.lastSeen) c.lastSeen = entry.time;
  }
}

export function flag(c: IpCounters, thresholds: Thresholds): RankedIp {
  const reasons = RANK_KEYS.filter((k) => counterOf(c, k) > thresholds[k]).map(
    (k) => `${k}>${thresholds[k]}`,
  );
  return { ...c, flagged: reasons.length > 0, reasons };
}

/** Highest `by` first; ties by requests, then by IP so the order never depends on the log's order. */
export function rank(counters: Iterable<IpCounters>, by: RankKey, thresholds: Thresholds): RankedIp[] {
  return [...counters]
    .map((c) => flag(c, thresholds))
    .sort(
      (a, b) =>
        counterOf(b, by) - counterOf(a, by) ||
        b.requests - a.requests ||
        (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0),
    );
}
