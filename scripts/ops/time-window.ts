import { UsageError } from "./cli.js";

// `--since`/`--until` take an ISO 8601 time (`2026-11-27T10:00:00Z`) or a duration back from now (`15m`, `2h`,
// `7d`), the way operators think about "the last hour".

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseWhen(text: string, flag: string, now: number): number {
  const relative = /^(\d+)([smhd])$/.exec(text);
  if (relative) return now - Number(relative[1]) * (UNIT_MS[relative[2] as string] as number);
  if (/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.test(text)) {
    const t = Date.parse(text);
    if (!Number.isNaN(t)) return t;
  }
  throw new UsageError(
    `--${flag} must be an ISO time with a zone (2026-11-27T10:00:00Z) or a duration (15m, 2h, 7d)`,
  );
}
