import type BetterSqlite3 from "better-sqlite3";
import type { InboundContent } from "../inbound/content.js";
import type { OutgoingMessage } from "../messages.js";
import type { CommitBatcher } from "./commit-batcher.js";
import type {
  ConversationQuery,
  ConversationRecord,
  InboundQuery,
  InboundRecord,
  InboxStore,
  OutboundQuery,
  OutboundRecord,
  ReadMark,
} from "./inbox.js";

// The SQLite side of the inbox (migration 8). Every listing reads an index in the listing's own order and stops
// after `limit` rows (EXPLAIN QUERY PLAN shows no temporary B-tree; test/inbox-store.test.ts checks it):
//   inbound, no filter      inbound_messages_received (received_at)           [+ rowid, implicit]
//   inbound, contact        inbound_messages_sender (sender, received_at)     number, if given, filters rows
//                           (a contact rarely writes to more than one number)
//   inbound, number         inbound_messages_number (number_id, received_at)
//   outbound                the table itself by rowid, newest first, keeping the subject's rows; with a contact,
//                           messages_recipient (recipient) whose rows are in rowid order. No index is added to
//                           `messages` (it is the send path's hot table): a subject with few messages among very
//                           many of others' reads past those others' rows.
//   conversations           inbound_conversations_recent / _number; with a contact, its primary key (a few
//                           rows, one per number, sorted); unread counts: inbound_messages_unread (partial,
//                           unread rows only).
// The statements are built from fixed fragments only (never from input) and prepared once per filter combination.

interface InboundRow {
  rowid: number;
  id: string;
  sender: string;
  number_id: string | null;
  type: string;
  text: string | null;
  content: string | null;
  raw: string;
  profile_name: string | null;
  sent_at: number;
  received_at: number;
  read_at: number | null;
}

interface OutboundRow {
  rowid: number;
  id: string;
  kind: OutboundRecord["kind"];
  payload: string;
  status: OutboundRecord["status"];
  attempts: number;
  provider_message_id: string | null;
  number_id: string | null;
  error_code: string | null;
  error_message: string | null;
  created_at: number;
  updated_at: number;
}

interface ConversationRow {
  contact: string;
  number_key: string;
  last_inbound_id: string;
  last_received_at: number;
  last_sent_at: number;
  profile_name: string | null;
}

const INBOUND_COLUMNS =
  "rowid, id, sender, number_id, type, text, content, raw, profile_name, sent_at, received_at, read_at";
const OUTBOUND_COLUMNS =
  "rowid, id, kind, payload, status, attempts, provider_message_id, number_id, error_code, error_message, created_at, updated_at";

function toInbound(row: InboundRow): InboundRecord {
  return {
    rowid: row.rowid,
    id: row.id,
    from: row.sender,
    numberId: row.number_id,
    type: row.type,
    text: row.text,
    content: row.content === null ? null : (JSON.parse(row.content) as InboundContent),
    raw: JSON.parse(row.raw) as unknown,
    profileName: row.profile_name,
    sentAt: row.sent_at,
    receivedAt: row.received_at,
    readAt: row.read_at,
  };
}

function toOutbound(row: OutboundRow): OutboundRecord {
  return {
    rowid: row.rowid,
    id: row.id,
    kind: row.kind,
    message: JSON.parse(row.payload) as OutgoingMessage,
    status: row.status,
    attempts: row.attempts,
    providerMessageId: row.provider_message_id,
    numberId: row.number_id,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** The statement for one combination of filters, prepared at its first use. */
function statementCache(db: BetterSqlite3.Database, build: (flags: string) => string) {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return (flags: string) => {
    let statement = cache.get(flags);
    if (!statement) {
      statement = db.prepare(build(flags));
      cache.set(flags, statement);
    }
    return statement;
  };
}

const flagsOf = (...present: Array<[string, boolean]>) =>
  present
    .filter(([, on]) => on)
    .map(([flag]) => flag)
    .join("");

export function inboundListSql(flags: string): string {
  const where = [
    flags.includes("c") ? "sender = @contact" : undefined,
    flags.includes("n") ? "number_id IS @numberId" : undefined,
    flags.includes("b") ? "(received_at, rowid) < (@receivedAt, @rowid)" : undefined,
  ].filter(Boolean);
  // With a contact, its own index: left to itself the planner may prefer the number's, and read all of the
  // number's messages to find one contact's.
  const index = flags.includes("c") ? "INDEXED BY inbound_messages_sender" : "";
  return `SELECT ${INBOUND_COLUMNS} FROM inbound_messages ${index} ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
    ORDER BY received_at DESC, rowid DESC LIMIT @limit`;
}

export function outboundListSql(flags: string): string {
  const where = [
    "subject = @subject",
    flags.includes("c") ? "recipient = @contact" : undefined,
    flags.includes("n") ? "number_id IS @numberId" : undefined,
    flags.includes("b") ? "rowid < @before" : undefined,
  ].filter(Boolean);
  return `SELECT ${OUTBOUND_COLUMNS} FROM messages WHERE ${where.join(" AND ")} ORDER BY rowid DESC LIMIT @limit`;
}

export function conversationListSql(flags: string): string {
  const where = [
    flags.includes("c") ? "contact = @contact" : undefined,
    flags.includes("n") ? "number_key = @numberKey" : undefined,
    flags.includes("b")
      ? "(last_received_at, contact, number_key) < (@lastReceivedAt, @beforeContact, @beforeNumberKey)"
      : undefined,
  ].filter(Boolean);
  return `SELECT contact, number_key, last_inbound_id, last_received_at, last_sent_at, profile_name
    FROM inbound_conversations ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
    ORDER BY last_received_at DESC, contact DESC, number_key DESC LIMIT @limit`;
}

/** The inbox's other statements (exported for their query plans' test). */
export const INBOX_SQL = {
  unread: "SELECT COUNT(*) FROM inbound_messages WHERE sender = ? AND number_id IS ? AND read_at IS NULL",
  lastOutbound: `SELECT ${OUTBOUND_COLUMNS} FROM messages WHERE recipient = @contact AND number_id IS @numberId
    AND subject = @subject ORDER BY rowid DESC LIMIT 1`,
  // WhatsApp marks every earlier message of the conversation read with the one named (Meta's read receipt does).
  // The unread rows of one conversation only (left to itself the planner may read all of the number's messages).
  markRead: `UPDATE inbound_messages INDEXED BY inbound_messages_unread SET read_at = @now
    WHERE sender = @sender AND number_id IS @numberId AND read_at IS NULL
      AND (received_at, rowid) <= (@receivedAt, @rowid)`,
} as const;

export function createSqliteInboxStore(db: BetterSqlite3.Database, batcher: CommitBatcher): InboxStore {
  const inboundList = statementCache(db, inboundListSql);
  const outboundList = statementCache(db, outboundListSql);
  const conversationList = statementCache(db, conversationListSql);
  const s = {
    inbound: db.prepare(`SELECT ${INBOUND_COLUMNS} FROM inbound_messages WHERE id = ?`),
    unread: db.prepare(INBOX_SQL.unread).pluck(),
    lastOutbound: db.prepare(INBOX_SQL.lastOutbound),
    markRead: db.prepare(INBOX_SQL.markRead),
  };

  return {
    async listInbound(query: InboundQuery) {
      const flags = flagsOf(
        ["c", query.contact !== undefined],
        ["n", query.numberId !== undefined],
        ["b", query.before !== undefined],
      );
      const rows = inboundList(flags).all({
        limit: query.limit,
        ...(query.contact !== undefined ? { contact: query.contact } : {}),
        ...(query.numberId !== undefined ? { numberId: query.numberId } : {}),
        ...(query.before ? { receivedAt: query.before.receivedAt, rowid: query.before.rowid } : {}),
      }) as InboundRow[];
      return rows.map(toInbound);
    },

    async listOutbound(query: OutboundQuery) {
      const flags = flagsOf(
        ["c", query.contact !== undefined],
        ["n", query.numberId !== undefined],
        ["b", query.before !== undefined],
      );
      const rows = outboundList(flags).all({
        subject: query.subject,
        limit: query.limit,
        ...(query.contact !== undefined ? { contact: query.contact } : {}),
        ...(query.numberId !== undefined ? { numberId: query.numberId } : {}),
        ...(query.before !== undefined ? { before: query.before } : {}),
      }) as OutboundRow[];
      return rows.map(toOutbound);
    },

    async listConversations(query: ConversationQuery) {
      const flags = flagsOf(
        ["c", query.contact !== undefined],
        ["n", query.numberId !== undefined],
        ["b", query.before !== undefined],
      );
      const rows = conversationList(flags).all({
        limit: query.limit,
        ...(query.contact !== undefined ? { contact: query.contact } : {}),
        ...(query.numberId !== undefined ? { numberKey: query.numberId ?? "" } : {}),
        ...(query.before
          ? {
              lastReceivedAt: query.before.lastReceivedAt,
              beforeContact: query.before.contact,
              beforeNumberKey: query.before.numberKey,
            }
          : {}),
      }) as ConversationRow[];
      const conversations: ConversationRecord[] = [];
      for (const row of rows) {
        const numberId = row.number_key === "" ? null : row.number_key;
        const last = s.inbound.get(row.last_inbound_id) as InboundRow | undefined;
        if (!last) continue;
        const outbound = s.lastOutbound.get({ contact: row.contact, numberId, subject: query.subject }) as
          | OutboundRow
          | undefined;
        conversations.push({
          contact: row.contact,
          numberId,
          profileName: row.profile_name,
          position: { lastReceivedAt: row.last_received_at, contact: row.contact, numberKey: row.number_key },
          lastSentAt: row.last_sent_at,
          lastInbound: toInbound(last),
          lastOutbound: outbound ? toOutbound(outbound) : undefined,
          unread: s.unread.get(row.contact, numberId) as number,
        });
      }
      return conversations;
    },

    async getInbound(id) {
      const row = s.inbound.get(id) as InboundRow | undefined;
      return row ? toInbound(row) : undefined;
    },

    markInboundRead(id, now) {
      return batcher.write((): ReadMark | undefined => {
        const row = s.inbound.get(id) as InboundRow | undefined;
        if (!row) return undefined;
        s.markRead.run({
          now,
          sender: row.sender,
          numberId: row.number_id,
          receivedAt: row.received_at,
          rowid: row.rowid,
        });
        return {
          readAt: row.read_at ?? now,
          unread: s.unread.get(row.sender, row.number_id) as number,
        };
      });
    },
  };
}
