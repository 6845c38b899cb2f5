import type BetterSqlite3 from "better-sqlite3";
import type { MessageStatus } from "../messages.js";

// A broadcast's counters follow its messages' statuses, in the same transaction as each status change, so they
// never drift from the messages they count. They were kept by two triggers on `messages` (migrations 2, 4 and 5;
// dropped by migration 14): a trigger ran for every status change of every message, broadcast or not, and cost
// about 20,000 instructions a message (claim and outcome; callgrind, README) where only broadcast messages move a
// counter. Now every statement that changes the status of a message that may belong to a broadcast reports the
// change here, knowing the message's broadcast (ClaimedMessage.broadcastId, or read with the row).

const COUNTED = {
  sent: new Set<MessageStatus>(["sent", "delivered", "read"]),
  delivered: new Set<MessageStatus>(["delivered", "read"]),
  read: new Set<MessageStatus>(["read"]),
  failed: new Set<MessageStatus>(["failed"]),
} as const;

export interface BroadcastProgress {
  /**
   * Message `messageId` of broadcast `broadcastId` went from `from` to `to`. A message of a cancelled broadcast
   * that comes back to `queued` (a send in flight at the cancel that will be retried) is dropped and counted as
   * skipped, not resent.
   */
  moved(broadcastId: string, messageId: string, from: MessageStatus, to: MessageStatus, now: number): void;
  /** `count` queued messages of broadcast `broadcastId` failed at once (their number was removed). */
  failedQueued(broadcastId: string, count: number, now: number): void;
}

export function broadcastProgress(db: BetterSqlite3.Database): BroadcastProgress {
  const s = {
    count: db.prepare(
      `UPDATE broadcasts SET n_sent = n_sent + @sent, n_delivered = n_delivered + @delivered, n_read = n_read + @read,
         n_failed = n_failed + @failed, updated_at = @now
       WHERE id = @id`,
    ),
    isCancelled: db.prepare("SELECT 1 FROM broadcasts WHERE id = ? AND status = 'cancelled'").pluck(),
    drop: db.prepare("DELETE FROM messages WHERE id = ?"),
    skip: db.prepare("UPDATE broadcasts SET n_skipped = n_skipped + 1 WHERE id = ?"),
  };
  const delta = (counted: Set<MessageStatus>, from: MessageStatus, to: MessageStatus) =>
    Number(counted.has(to)) - Number(counted.has(from));
  return {
    moved(broadcastId, messageId, from, to, now) {
      if (from === to) return;
      const counts = {
        sent: delta(COUNTED.sent, from, to),
        delivered: delta(COUNTED.delivered, from, to),
        read: delta(COUNTED.read, from, to),
        failed: delta(COUNTED.failed, from, to),
      };
      // queued -> sending (a claim) and back (a retry) move no counter.
      if (counts.sent || counts.delivered || counts.read || counts.failed)
        s.count.run({ id: broadcastId, ...counts, now });
      if (to === "queued" && s.isCancelled.get(broadcastId)) {
        s.drop.run(messageId);
        s.skip.run(broadcastId);
      }
    },
    failedQueued(broadcastId, count, now) {
      s.count.run({ id: broadcastId, sent: 0, delivered: 0, read: 0, failed: count, now });
    },
  };
}
