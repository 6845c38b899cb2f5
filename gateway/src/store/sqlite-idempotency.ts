import type BetterSqlite3 from "better-sqlite3";
import type { EnqueueResult, IdempotencyClaim } from "./store.js";

export type IdempotencyOutcome = Exclude<EnqueueResult, { kind: "created" }>;

/**
 * Checks and records an `Idempotency-Key` inside the caller's write transaction, so the key and the work it
 * created commit together: a conflict or a replay comes back, a new key is recorded and `undefined` means "create".
 */
export function idempotencyClaimer(
  db: BetterSqlite3.Database,
): (claim: IdempotencyClaim | undefined, at: number) => IdempotencyOutcome | undefined {
  const get = db.prepare(
    "SELECT request_hash, status_code, response FROM idempotency_keys WHERE subject = ? AND key = ?",
  );
  const insert = db.prepare(
    "INSERT INTO idempotency_keys (subject, key, request_hash, status_code, response, created_at) VALUES (?, ?, ?, ?, ?, ?)",
  );
  return (claim, at) => {
    if (!claim) return undefined;
    const existing = get.get(claim.subject, claim.key) as
      | { request_hash: string; status_code: number; response: string }
      | undefined;
    if (existing) {
      if (existing.request_hash !== claim.requestHash) return { kind: "conflict" };
      return {
        kind: "replayed",
        response: { statusCode: existing.status_code, body: JSON.parse(existing.response) },
      };
    }
    insert.run(
      claim.subject,
      claim.key,
      claim.requestHash,
      claim.response.statusCode,
      JSON.stringify(claim.response.body),
      at,
    );
    return undefined;
  };
}
