import type { InboundContent } from "../inbound/content.js";
import type { MessageRecord } from "./store.js";

// Reading what the gateway received and sent, page by page, newest first; conversations (one per contact and
// receiving number); read marks. Pages end at a position (`before`), never at an offset, so a page costs the same
// at the millionth row as at the first and rows arriving meanwhile neither repeat nor vanish.

export interface InboundRecord {
  /** The row's position among arrivals; pages are cut on (receivedAt, rowid). */
  rowid: number;
  /** The provider's id: Meta's wamid, or the WhatsApp Web message key's id. */
  id: string;
  /** The sender, E.164. */
  from: string;
  /** The number that received it; null for the default number. */
  numberId: string | null;
  type: string;
  text: string | null;
  content: InboundContent | null;
  raw: unknown;
  profileName: string | null;
  sentAt: number;
  receivedAt: number;
  readAt: number | null;
}

/** An outbound message as the inbox lists it: the message's record without what only the outbox reads. */
export type OutboundRecord = Omit<MessageRecord, "subject" | "secret" | "priority" | "nextAttemptAt"> & {
  /** Pages of outbound messages are cut on the rowid: insertion order, with no index beyond the table's own. */
  rowid: number;
};

export interface InboundPosition {
  receivedAt: number;
  rowid: number;
}

/** `numberId`: undefined for every number, null for the default number only. */
export interface InboundQuery {
  contact?: string;
  numberId?: string | null;
  before?: InboundPosition;
  limit: number;
}

export interface OutboundQuery {
  /** Only this token subject's messages. */
  subject: string;
  contact?: string;
  numberId?: string | null;
  /** A rowid: older messages only. */
  before?: number;
  limit: number;
}

export interface ConversationPosition {
  lastReceivedAt: number;
  contact: string;
  /** The number's id, or '' for the default number. */
  numberKey: string;
}

export interface ConversationQuery {
  /** Whose outbound messages count as the conversation's last message. */
  subject: string;
  contact?: string;
  numberId?: string | null;
  before?: ConversationPosition;
  limit: number;
}

export interface ConversationRecord {
  contact: string;
  numberId: string | null;
  profileName: string | null;
  position: ConversationPosition;
  /** The customer's latest message time (their clock, as Meta counts the 24-hour window). */
  lastSentAt: number;
  lastInbound: InboundRecord;
  /** The subject's latest message to this contact from this number, if any. */
  lastOutbound: OutboundRecord | undefined;
  unread: number;
}

export interface ReadMark {
  /** When the message was marked read (the first time, if it already was). */
  readAt: number;
  /** Messages of the conversation still unread (newer than this one). */
  unread: number;
}

export interface InboxStore {
  /** Up to `limit` inbound messages, newest arrival first. */
  listInbound(query: InboundQuery): Promise<InboundRecord[]>;
  /** Up to `limit` of a subject's outbound messages, newest first. */
  listOutbound(query: OutboundQuery): Promise<OutboundRecord[]>;
  /** Up to `limit` conversations, the one whose customer wrote last first. */
  listConversations(query: ConversationQuery): Promise<ConversationRecord[]>;
  getInbound(id: string): Promise<InboundRecord | undefined>;
  /**
   * Marks the inbound message read and, as WhatsApp does, every earlier one of its conversation; undefined when
   * there is no such message.
   */
  markInboundRead(id: string, now: number): Promise<ReadMark | undefined>;
}
