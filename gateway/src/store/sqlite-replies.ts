import type BetterSqlite3 from "better-sqlite3";
import type { CommitBatcher } from "./commit-batcher.js";
import type {
  AutoReplyClaim,
  AutoReplyResult,
  PendingReplyMatch,
  RepliesStore,
  ReplyMatchOutcome,
  ReplyRule,
  ReplyRulePatch,
} from "./replies.js";
import type { NewMessage } from "./store.js";

// The SQLite side of automated replies (tables of migration 3). The main store composes it, sharing its
// connection and commit batcher so a reply and its outbox message commit together.

interface RuleRow {
  id: string;
  subject: string;
  match_type: ReplyRule["matchType"];
  pattern: string;
  ignore_case: number;
  priority: number;
  reply: string;
  enabled: number;
  created_at: number;
  updated_at: number;
}

function toRule(row: RuleRow): ReplyRule {
  return {
    id: row.id,
    subject: row.subject,
    matchType: row.match_type,
    pattern: row.pattern,
    ignoreCase: row.ignore_case === 1,
    priority: row.priority,
    reply: JSON.parse(row.reply) as ReplyRule["reply"],
    enabled: row.enabled === 1,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function createSqliteRepliesStore(
  db: BetterSqlite3.Database,
  batcher: CommitBatcher,
  insertMessage: (message: NewMessage) => void,
): RepliesStore {
  const s = {
    countRules: db.prepare("SELECT COUNT(*) FROM reply_rules WHERE subject = ?").pluck(),
    insertRule: db.prepare(
      `INSERT INTO reply_rules (id, subject, match_type, pattern, ignore_case, priority, reply, enabled, created_at, updated_at)
       VALUES (@id, @subject, @matchType, @pattern, @ignoreCase, @priority, @reply, @enabled, @createdAt, @createdAt)`,
    ),
    listRules: db.prepare("SELECT * FROM reply_rules WHERE subject = ? ORDER BY priority, created_at, id"),
    getRule: db.prepare("SELECT * FROM reply_rules WHERE subject = ? AND id = ?"),
    updateRule: db.prepare(
      `UPDATE reply_rules SET match_type = @matchType, pattern = @pattern, ignore_case = @ignoreCase,
         priority = @priority, reply = @reply, enabled = @enabled, updated_at = @now
       WHERE subject = @subject AND id = @id`,
    ),
    deleteRule: db.prepare("DELETE FROM reply_rules WHERE subject = ? AND id = ?"),
    activeRules: db.prepare("SELECT * FROM reply_rules WHERE enabled = 1 ORDER BY priority, created_at, id"),
    answered: db.prepare("SELECT 1 FROM auto_reply_inbound WHERE inbound_id = ?").pluck(),
    lastReply: db.prepare("SELECT last_reply_at FROM auto_reply_contacts WHERE contact = ?").pluck(),
    recordInbound: db.prepare(
      "INSERT INTO auto_reply_inbound (inbound_id, rule_id, message_id, replied_at) VALUES (?, ?, ?, ?)",
    ),
    pruneInbound: db.prepare("DELETE FROM auto_reply_inbound WHERE replied_at < ?"),
    pruneContacts: db.prepare("DELETE FROM auto_reply_contacts WHERE last_reply_at < ?"),
    queueMatch: db.prepare(
      "INSERT OR IGNORE INTO auto_reply_matches (inbound_id, outcome, created_at, decided_at) VALUES (?, ?, ?, ?)",
    ),
    pendingMatches: db.prepare(
      `SELECT m.inbound_id AS inboundId, i.sender AS contact, i.text AS text, i.sent_at AS sentAt,
              i.number_id AS numberId
       FROM auto_reply_matches m LEFT JOIN inbound_messages i ON i.id = m.inbound_id
       WHERE m.outcome = 'pending' ORDER BY m.created_at LIMIT ?`,
    ),
    matchOutcome: db.prepare("SELECT outcome FROM auto_reply_matches WHERE inbound_id = ?").pluck(),
    decideMatch: db.prepare(
      "UPDATE auto_reply_matches SET outcome = ?, rule_id = ?, decided_at = ? WHERE inbound_id = ? AND outcome = 'pending'",
    ),
    pruneMatches: db.prepare("DELETE FROM auto_reply_matches WHERE created_at < ? AND outcome != 'pending'"),
    recordContact: db.prepare(
      `INSERT INTO auto_reply_contacts (contact, last_reply_at) VALUES (?, ?)
       ON CONFLICT (contact) DO UPDATE SET last_reply_at = excluded.last_reply_at`,
    ),
  };

  /** Refuses an inbound id already answered and a contact inside its cooldown; otherwise enqueues the reply. */
  function claimReply(claim: AutoReplyClaim): AutoReplyResult {
    if (s.answered.get(claim.inboundId) !== undefined) return "already_replied";
    const now = claim.message.createdAt;
    const last = s.lastReply.get(claim.contact) as number | undefined;
    if (last !== undefined && now - last < claim.cooldownMs) return "cooldown";
    insertMessage(claim.message);
    s.recordInbound.run(claim.inboundId, claim.ruleId, claim.message.id, now);
    s.recordContact.run(claim.contact, now);
    return "enqueued";
  }

  return {
    createReplyRule(rule, maxRules) {
      return batcher.write(() => {
        if ((s.countRules.get(rule.subject) as number) >= maxRules) return false;
        s.insertRule.run({
          id: rule.id,
          subject: rule.subject,
          matchType: rule.matchType,
          pattern: rule.pattern,
          ignoreCase: rule.ignoreCase ? 1 : 0,
          priority: rule.priority,
          reply: JSON.stringify(rule.reply),
          enabled: rule.enabled ? 1 : 0,
          createdAt: rule.createdAt,
        });
        return true;
      });
    },
    async listReplyRules(subject) {
      return (s.listRules.all(subject) as RuleRow[]).map(toRule);
    },
    async getReplyRule(subject, id) {
      const row = s.getRule.get(subject, id) as RuleRow | undefined;
      return row ? toRule(row) : undefined;
    },
    updateReplyRule(subject, id, patch: ReplyRulePatch, now) {
      return batcher.write(() => {
        const row = s.getRule.get(subject, id) as RuleRow | undefined;
        if (!row) return undefined;
        const next = { ...toRule(row), ...patch };
        s.updateRule.run({
          subject,
          id,
          matchType: next.matchType,
          pattern: next.pattern,
          ignoreCase: next.ignoreCase ? 1 : 0,
          priority: next.priority,
          reply: JSON.stringify(next.reply),
          enabled: next.enabled ? 1 : 0,
          now,
        });
        return { ...next, updatedAt: now };
      });
    },
    deleteReplyRule(subject, id) {
      return batcher.write(() => s.deleteRule.run(subject, id).changes === 1);
    },
    async activeReplyRules() {
      return (s.activeRules.all() as RuleRow[]).map(toRule);
    },
    pruneAutoReplies(before) {
      return batcher.write(
        () => {
          s.pruneInbound.run(before);
          s.pruneContacts.run(before);
          s.pruneMatches.run(before);
        },
        { durable: false },
      );
    },
    claimAutoReply(claim: AutoReplyClaim) {
      return batcher.write(() => claimReply(claim));
    },
    queueReplyMatches(entries, now) {
      return batcher.write(() => {
        for (const entry of entries)
          s.queueMatch.run(entry.inboundId, entry.outcome, now, entry.outcome === "pending" ? null : now);
      });
    },
    async pendingReplyMatches(limit) {
      const rows = s.pendingMatches.all(limit) as Array<{
        inboundId: string;
        contact: string | null;
        text: string | null;
        sentAt: number | null;
        numberId: string | null;
      }>;
      // An inbound message that is gone (or had no text) is matched as empty: no rule answers it.
      return rows.map(
        (r): PendingReplyMatch => ({
          inboundId: r.inboundId,
          contact: r.contact ?? "",
          text: r.text ?? "",
          sentAt: r.sentAt ?? 0,
          ...(r.numberId ? { numberId: r.numberId } : {}),
        }),
      );
    },
    settleReplyMatch(inboundId, settlement, now) {
      return batcher.write((): ReplyMatchOutcome => {
        const current = s.matchOutcome.get(inboundId) as ReplyMatchOutcome | undefined;
        if (current !== undefined && current !== "pending") return current;
        let outcome: ReplyMatchOutcome;
        let ruleId: string | null = null;
        if (settlement.kind === "matched") {
          const result = claimReply(settlement.claim);
          outcome = result === "enqueued" ? "replied" : result;
          ruleId = settlement.claim.ruleId;
        } else {
          outcome = settlement.kind;
        }
        if (current === undefined) s.queueMatch.run(inboundId, "pending", now, null);
        s.decideMatch.run(outcome, ruleId, now, inboundId);
        return outcome;
      });
    },
    async replyMatchOutcome(inboundId) {
      return s.matchOutcome.get(inboundId) as ReplyMatchOutcome | undefined;
    },
  };
}
