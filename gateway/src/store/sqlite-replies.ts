import type BetterSqlite3 from "better-sqlite3";
import type { CommitBatcher } from "./commit-batcher.js";
import type { AutoReplyClaim, AutoReplyResult, RepliesStore, ReplyRule, ReplyRulePatch } from "./replies.js";
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
    recordContact: db.prepare(
      `INSERT INTO auto_reply_contacts (contact, last_reply_at) VALUES (?, ?)
       ON CONFLICT (contact) DO UPDATE SET last_reply_at = excluded.last_reply_at`,
    ),
  };

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
        },
        { durable: false },
      );
    },
    claimAutoReply(claim: AutoReplyClaim) {
      return batcher.write((): AutoReplyResult => {
        if (s.answered.get(claim.inboundId) !== undefined) return "already_replied";
        const now = claim.message.createdAt;
        const last = s.lastReply.get(claim.contact) as number | undefined;
        if (last !== undefined && now - last < claim.cooldownMs) return "cooldown";
        insertMessage(claim.message);
        s.recordInbound.run(claim.inboundId, claim.ruleId, claim.message.id, now);
        s.recordContact.run(claim.contact, now);
        return "enqueued";
      });
    },
  };
}
