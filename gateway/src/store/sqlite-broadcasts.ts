import type BetterSqlite3 from "better-sqlite3";
import { uuidv7 } from "../ids.js";
import type { OutgoingMessage, TemplateComponent } from "../messages.js";
import type {
  BroadcastRecord,
  BroadcastStatus,
  BroadcastStore,
  BroadcastTemplate,
  CancelResult,
  MaterialiseOptions,
  NewBroadcast,
} from "./broadcasts.js";
import type { CommitBatcher } from "./commit-batcher.js";
import { idempotencyClaimer } from "./sqlite-idempotency.js";
import type { EnqueueResult, IdempotencyClaim } from "./store.js";

// The SQLite side of broadcasts (schema: migration 2). Progress counters move with their messages' statuses, in
// the same transaction as every status change (outcome of a send or Meta's status webhook), so they can never
// drift from the messages they count (broadcast-progress.ts).

interface BroadcastRow {
  id: string;
  subject: string;
  name: string | null;
  template: string;
  status: BroadcastStatus;
  total: number;
  cursor: number;
  n_sent: number;
  n_delivered: number;
  n_read: number;
  n_failed: number;
  n_skipped: number;
  n_invalid: number;
  n_duplicates: number;
  created_at: number;
  updated_at: number;
  completed_at: number | null;
  number_id: string | null;
}

function toRecord(row: BroadcastRow): BroadcastRecord {
  return {
    id: row.id,
    subject: row.subject,
    name: row.name,
    status: row.status,
    total: row.total,
    materialised: row.cursor,
    sent: row.n_sent,
    delivered: row.n_delivered,
    read: row.n_read,
    failed: row.n_failed,
    skipped: row.n_skipped,
    invalid: row.n_invalid,
    duplicates: row.n_duplicates,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    numberId: row.number_id,
  };
}

/** The template of one recipient: its parameters become the body component's text parameters. */
export function recipientTemplate(
  template: BroadcastTemplate,
  parameters: string[] | null,
): BroadcastTemplate {
  if (!parameters || parameters.length === 0) return template;
  const body: TemplateComponent = {
    type: "body",
    parameters: parameters.map((text) => ({ type: "text", text })),
  };
  const components = template.components ?? [];
  const hasBody = components.some((c) => c.type === "body");
  return {
    ...template,
    components: hasBody ? components.map((c) => (c.type === "body" ? body : c)) : [...components, body],
  };
}

/** Recipients a known-contacts broadcast may pass over in one step. */
const MAX_SCAN = 1000;

/** Broadcast progress is written as outbox bookkeeping: a kill loses none of it (see sqlite.ts). */
const BOOKKEEPING = { durable: false } as const;

export function createSqliteBroadcastStore(
  db: BetterSqlite3.Database,
  batcher: CommitBatcher,
): BroadcastStore {
  const claimIdempotency = idempotencyClaimer(db);
  const s = {
    insertBroadcast: db.prepare(
      `INSERT INTO broadcasts (id, subject, name, template, status, total, n_invalid, n_duplicates, created_at, updated_at, number_id, only_known_contacts)
       VALUES (@id, @subject, @name, @template, 'queued', @total, @invalid, @duplicates, @createdAt, @createdAt, @numberId, @onlyKnown)`,
    ),
    insertRecipient: db.prepare(
      "INSERT INTO broadcast_recipients (broadcast_id, seq, recipient, parameters) VALUES (?, ?, ?, ?)",
    ),
    get: db.prepare("SELECT * FROM broadcasts WHERE id = ?"),
    active: db.prepare(
      "SELECT id, subject, template, cursor, total, only_known_contacts FROM broadcasts WHERE status IN ('queued', 'running') AND cursor < total AND number_id IS ? ORDER BY created_at, id",
    ),
    hasActive: db.prepare("SELECT 1 FROM broadcasts WHERE status IN ('queued', 'running') LIMIT 1").pluck(),
    activeNumbers: db
      .prepare("SELECT DISTINCT number_id FROM broadcasts WHERE status IN ('queued', 'running')")
      .pluck(),
    nextRecipients: db
      .prepare(
        "SELECT seq, recipient, parameters FROM broadcast_recipients WHERE broadcast_id = ? AND seq > ? ORDER BY seq LIMIT ?",
      )
      .raw(),
    // The last time anything went (or is due to go) to this number from the same sending number (the pair rate
    // is per pair): a queued row counts at its due time, any other at its last change, which is at or after its
    // send (conservative: the pair interval only grows).
    lastContact: db
      .prepare(
        "SELECT MAX(CASE WHEN status = 'queued' THEN next_attempt_at ELSE updated_at END) FROM messages WHERE recipient = ? AND number_id IS ?",
      )
      .pluck(),
    insertMessage: db.prepare(
      `INSERT INTO messages (id, subject, kind, recipient, payload, priority, status, next_attempt_at, created_at, updated_at, broadcast_id, number_id)
       VALUES (@id, @subject, @kind, @recipient, @payload, @priority, 'queued', @dueAt, @now, @now, @broadcastId, @numberId)`,
    ),
    knownContact: db
      .prepare("SELECT 1 FROM inbound_messages WHERE sender = ? AND number_id IS ? LIMIT 1")
      .pluck(),
    skipOne: db.prepare("UPDATE broadcasts SET n_skipped = n_skipped + 1 WHERE id = ?"),
    bulkSince: db
      .prepare(
        "SELECT COUNT(*) FROM messages WHERE number_id IS ? AND broadcast_id IS NOT NULL AND created_at > ?",
      )
      .pluck(),
    advance: db.prepare(
      "UPDATE broadcasts SET cursor = @cursor, status = 'running', updated_at = @now WHERE id = @id",
    ),
    outstanding: db
      .prepare(
        `SELECT (SELECT COUNT(*) FROM messages WHERE status = 'queued' AND priority = @priority AND number_id IS @numberId)
              + (SELECT COUNT(*) FROM messages WHERE status = 'sending' AND priority = @priority AND number_id IS @numberId)`,
      )
      .pluck(),
    cancel: db.prepare(
      "UPDATE broadcasts SET status = 'cancelled', updated_at = @now, completed_at = @now WHERE id = @id AND status IN ('queued', 'running')",
    ),
    dropQueued: db.prepare("DELETE FROM messages WHERE broadcast_id = ? AND status = 'queued'"),
    setSkipped: db.prepare("UPDATE broadcasts SET n_skipped = ? WHERE id = ?"),
    finished: db.prepare(
      "SELECT * FROM broadcasts WHERE status = 'running' AND cursor >= total AND n_sent + n_failed + n_skipped >= total",
    ),
    complete: db.prepare(
      "UPDATE broadcasts SET status = 'completed', completed_at = @now, updated_at = @now WHERE id = @id AND status = 'running'",
    ),
  };

  return {
    createBroadcast(b: NewBroadcast, idempotency?: IdempotencyClaim): Promise<EnqueueResult> {
      return batcher.write((): EnqueueResult => {
        const claimed = claimIdempotency(idempotency, b.createdAt);
        if (claimed) return claimed;
        s.insertBroadcast.run({
          id: b.id,
          subject: b.subject,
          name: b.name,
          // Plain text is kept in the same column, as {"text": …}.
          template: JSON.stringify(b.text !== undefined ? { text: b.text } : b.template),
          onlyKnown: b.onlyKnownContacts ? 1 : 0,
          total: b.total,
          invalid: b.invalid,
          duplicates: b.duplicates,
          createdAt: b.createdAt,
          numberId: b.numberId ?? null,
        });
        // One prepared statement in a loop, inside this one transaction: 100,000 rows commit at once.
        let seq = 0;
        for (const r of b.recipients) {
          seq++;
          s.insertRecipient.run(b.id, seq, r.to, r.parameters?.length ? JSON.stringify(r.parameters) : null);
        }
        if (seq !== b.total) throw new Error("broadcast: recipient count does not match total");
        return { kind: "created" };
      });
    },

    async getBroadcast(id) {
      const row = s.get.get(id) as BroadcastRow | undefined;
      return row ? toRecord(row) : undefined;
    },

    cancelBroadcast(id, subject, now) {
      return batcher.write((): CancelResult => {
        const row = s.get.get(id) as BroadcastRow | undefined;
        if (!row || row.subject !== subject) return { kind: "not_found" };
        if (s.cancel.run({ id, now }).changes === 0) return { kind: "final", broadcast: toRecord(row) };
        const dropped = s.dropQueued.run(id).changes;
        s.setSkipped.run(row.total - row.cursor + dropped, id);
        return { kind: "cancelled", broadcast: toRecord(s.get.get(id) as BroadcastRow) };
      });
    },

    materialise({ now, limit, pairIntervalMs, priority, numberId }: MaterialiseOptions) {
      return batcher.write(() => {
        let made = 0;
        const active = s.active.all(numberId) as Array<
          Pick<BroadcastRow, "id" | "subject" | "template" | "cursor" | "total"> & {
            only_known_contacts: number;
          }
        >;
        for (const b of active) {
          if (made >= limit) break;
          const content = JSON.parse(b.template) as BroadcastTemplate | { text: string };
          let cursor = b.cursor;
          // Recipients left out (only known contacts) do not use the allowance: read on, a bounded number of rows.
          let scanned = 0;
          for (;;) {
            const rows = s.nextRecipients.all(b.id, cursor, limit - made) as Array<
              [number, string, string | null]
            >;
            scanned += rows.length;
            for (const [seq, to, parameters] of rows) {
              cursor = seq;
              if (b.only_known_contacts === 1 && s.knownContact.get(to, numberId) === undefined) {
                s.skipOne.run(b.id);
                continue;
              }
              const last = s.lastContact.get(to, numberId) as number | null;
              const dueAt = last === null ? now : Math.max(now, last + pairIntervalMs);
              const message: OutgoingMessage =
                "text" in content
                  ? { type: "text", to, text: { body: content.text } }
                  : {
                      type: "template",
                      to,
                      template: recipientTemplate(
                        content,
                        parameters ? (JSON.parse(parameters) as string[]) : null,
                      ),
                    };
              s.insertMessage.run({
                kind: message.type,
                id: uuidv7(now),
                subject: b.subject,
                recipient: to,
                payload: JSON.stringify(message),
                priority,
                dueAt,
                now,
                broadcastId: b.id,
                numberId,
              });
              made++;
            }
            if (rows.length === 0 || made >= limit || b.only_known_contacts !== 1 || scanned >= MAX_SCAN)
              break;
          }
          s.advance.run({ id: b.id, cursor, now });
        }
        return made;
      }, BOOKKEEPING);
    },

    async outstandingBulk(priority, numberId = null) {
      return s.outstanding.get({ priority, numberId }) as number;
    },
    async bulkSentSince(numberId, since) {
      return s.bulkSince.get(numberId, since) as number;
    },
    async activeBroadcastNumbers() {
      return s.activeNumbers.all() as Array<string | null>;
    },
    async hasActiveBroadcasts() {
      return s.hasActive.get() !== undefined;
    },
    async finishedBroadcasts() {
      return (s.finished.all() as BroadcastRow[]).map(toRecord);
    },
    markCompleted(id, now) {
      return batcher.write(() => s.complete.run({ id, now }).changes === 1, BOOKKEEPING);
    },
  };
}
