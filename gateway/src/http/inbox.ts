import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import { publicStatus } from "../messages.js";
import { DEFAULT_NUMBER_ID } from "../numbers/from.js";
import type {
  ConversationPosition,
  ConversationRecord,
  InboundPosition,
  InboundRecord,
  OutboundRecord,
} from "../store/inbox.js";
import type { Store } from "../store/store.js";
import type { ReadReceipt, SendOutcome } from "../transport/transport.js";
import { conversationsPage, messagesPage } from "./answers.js";
import type { ScopeGuard } from "./auth.js";
import { ApiError, notFound } from "./errors.js";
import { fromField, noQuery } from "./schemas.js";

// The inbox (scope `inbox`; `admin` implies it). The inbox is the gateway's, not a token's: inbound messages have
// no owner, so every inbox token sees every number's inbound messages, as every webhook subscription receives
// them. Outbound messages stay their sender's: `direction=out` lists the token subject's own messages only (as
// GET /v1/messages/:id shows only one's own), and a conversation's last message is the newest of the customer's
// and this subject's. Pages are newest first and end at an opaque cursor (`next`, given back as `before`).
//
// A read receipt goes to WhatsApp directly through the number that received the message, not through the outbox:
// WhatsApp answers it at once and sends no status for it later, so the caller learns the outcome from this answer;
// it is idempotent, so the caller's retry is its retry; it must not wait behind a broadcast's backlog in the queue;
// and it is no message (it has no place among `direction=out`). The message (with the conversation's earlier ones,
// as WhatsApp does) is marked read here only once WhatsApp took the receipt: unread counts never claim blue ticks
// the customer does not see.

export type ReadReceiptSender = (receipt: ReadReceipt) => Promise<SendOutcome>;

export interface InboxRoutesOptions {
  store: Store;
  guard: (scope: "inbox") => ScopeGuard;
  readReceipts: ReadReceiptSender;
  /** How long a read receipt may take before the answer says to try again. */
  readTimeoutMs: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** A query string's `+` may arrive as a space: the plus is optional. */
const contactQuery = z
  .string()
  .regex(/^[ +]?[1-9][0-9]{6,14}$/, { error: "must be an E.164 phone number such as +14155550123" })
  .transform((s) => `+${s.replace(/^[ +]/, "")}`);
const limitQuery = z.coerce.number().int().min(1).max(100).default(50);
const cursorQuery = z
  .string()
  .min(1)
  .max(400)
  .regex(/^[A-Za-z0-9_-]+$/, { error: "must be a cursor (next)" });

export const listMessagesQuery = z.strictObject({
  direction: z.enum(["in", "out"]).default("in"),
  contact: contactQuery.optional(),
  number: fromField.optional(),
  before: cursorQuery.optional(),
  limit: limitQuery,
});
export const listConversationsQuery = z.strictObject({
  contact: contactQuery.optional(),
  number: fromField.optional(),
  before: cursorQuery.optional(),
  limit: limitQuery,
});
/** Meta's wamids are base64 with a prefix; WhatsApp Web ids are hex. */
export const inboundIdParams = z.strictObject({
  id: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[A-Za-z0-9._=+/:-]+$/, { error: "must be an inbound message id" }),
});

const encode = (text: string) => Buffer.from(text, "utf8").toString("base64url");
function decode(cursor: string, pattern: RegExp): RegExpExecArray {
  const match = pattern.exec(Buffer.from(cursor, "base64url").toString("utf8"));
  if (!match) throw new ApiError(400, "invalid_request", "querystring.before: not a cursor of this listing");
  return match;
}
const INBOUND_CURSOR = /^i\.([0-9]{1,15})\.([0-9]{1,15})$/;
const OUTBOUND_CURSOR = /^o\.([0-9]{1,15})$/;
const CONVERSATION_CURSOR = /^c\.([0-9]{1,15})\.([A-Za-z0-9-]{0,64})\.(\+[0-9]{7,15})$/;

const inboundCursor = (p: InboundPosition) => encode(`i.${p.receivedAt}.${p.rowid}`);
const outboundCursor = (rowid: number) => encode(`o.${rowid}`);
const conversationCursor = (p: ConversationPosition) =>
  encode(`c.${p.lastReceivedAt}.${p.numberKey}.${p.contact}`);

const iso = (ms: number) => new Date(ms).toISOString();

export function inboundView(m: InboundRecord) {
  const { context, ...typed } = m.content ?? {};
  return {
    id: m.id,
    direction: "in" as const,
    number_id: m.numberId ?? DEFAULT_NUMBER_ID,
    from: m.from,
    profile_name: m.profileName,
    type: m.type,
    // The type's object under the type's name, as in Meta's webhook; a type the inbox does not understand is
    // shown as WhatsApp sent it.
    ...(m.content ? typed : { whatsapp: m.raw }),
    context: context ?? null,
    timestamp: iso(m.sentAt),
    received_at: iso(m.receivedAt),
    read_at: m.readAt === null ? null : iso(m.readAt),
  };
}

export function outboundView(m: OutboundRecord) {
  const { to, type, ...typed } = m.message as unknown as Record<string, unknown>;
  return {
    id: m.id,
    direction: "out" as const,
    number_id: m.numberId ?? DEFAULT_NUMBER_ID,
    to,
    kind: m.kind,
    type,
    // An OTP's payload holds a placeholder where the code goes: nothing of it is shown.
    ...(m.kind === "otp" ? {} : typed),
    status: publicStatus(m.status),
    provider_message_id: m.providerMessageId,
    error: m.errorCode ? { code: m.errorCode, message: m.errorMessage } : null,
    created_at: iso(m.createdAt),
    updated_at: iso(m.updatedAt),
  };
}

function conversationView(c: ConversationRecord, now: number) {
  const outboundIsLater = c.lastOutbound !== undefined && c.lastOutbound.createdAt > c.lastInbound.receivedAt;
  const windowClosesAt = c.lastSentAt + DAY_MS;
  return {
    contact: c.contact,
    number_id: c.numberId ?? DEFAULT_NUMBER_ID,
    profile_name: c.profileName,
    unread: c.unread,
    last_message:
      outboundIsLater && c.lastOutbound ? outboundView(c.lastOutbound) : inboundView(c.lastInbound),
    last_inbound_at: iso(c.lastSentAt),
    // Meta's customer-service window: 24 hours from the customer's last message; after it, templates only.
    window_closes_at: iso(windowClosesAt),
    window_open: now < windowClosesAt,
  };
}

export const inboxRoutes: FastifyPluginAsync<InboxRoutesOptions> = async (app, options) => {
  const { store, guard } = options;

  /** `number`: undefined for every number, null for the default one; an unknown id is refused. */
  function numberFilter(number: string | undefined): string | null | undefined {
    if (number === undefined) return undefined;
    if (number === DEFAULT_NUMBER_ID) return null;
    if (!store.numbers.cachedNumber(number))
      throw new ApiError(422, "unknown_number", "number: no such number");
    return number;
  }

  app.get(
    "/v1/messages",
    {
      onRequest: guard("inbox"),
      schema: { querystring: listMessagesQuery, response: { 200: messagesPage } },
    },
    async (request) => {
      const query = request.query as z.infer<typeof listMessagesQuery>;
      const numberId = numberFilter(query.number);
      const filters = {
        ...(query.contact !== undefined ? { contact: query.contact } : {}),
        ...(numberId !== undefined ? { numberId } : {}),
        // One more than asked: whether there is a next page, without a count.
        limit: query.limit + 1,
      };
      if (query.direction === "in") {
        const before = query.before ? decode(query.before, INBOUND_CURSOR) : undefined;
        const rows = await store.inbox.listInbound({
          ...filters,
          ...(before ? { before: { receivedAt: Number(before[1]), rowid: Number(before[2]) } } : {}),
        });
        const page = rows.slice(0, query.limit);
        const last = page.at(-1);
        return {
          messages: page.map(inboundView),
          next: rows.length > query.limit && last ? inboundCursor(last) : null,
        };
      }
      const subject = request.principal?.subject;
      if (!subject) throw new ApiError(401, "unauthorized", "missing or invalid credentials");
      const before = query.before ? decode(query.before, OUTBOUND_CURSOR) : undefined;
      const rows = await store.inbox.listOutbound({
        ...filters,
        subject,
        ...(before ? { before: Number(before[1]) } : {}),
      });
      const page = rows.slice(0, query.limit);
      const last = page.at(-1);
      return {
        messages: page.map(outboundView),
        next: rows.length > query.limit && last ? outboundCursor(last.rowid) : null,
      };
    },
  );

  app.get(
    "/v1/conversations",
    {
      onRequest: guard("inbox"),
      schema: { querystring: listConversationsQuery, response: { 200: conversationsPage } },
    },
    async (request) => {
      const query = request.query as z.infer<typeof listConversationsQuery>;
      const subject = request.principal?.subject;
      if (!subject) throw new ApiError(401, "unauthorized", "missing or invalid credentials");
      const numberId = numberFilter(query.number);
      const before = query.before ? decode(query.before, CONVERSATION_CURSOR) : undefined;
      const rows = await store.inbox.listConversations({
        subject,
        limit: query.limit + 1,
        ...(query.contact !== undefined ? { contact: query.contact } : {}),
        ...(numberId !== undefined ? { numberId } : {}),
        ...(before
          ? {
              before: {
                lastReceivedAt: Number(before[1]),
                numberKey: before[2] ?? "",
                contact: before[3] ?? "",
              },
            }
          : {}),
      });
      const page = rows.slice(0, query.limit);
      const last = page.at(-1);
      const now = Date.now();
      return {
        conversations: page.map((c) => conversationView(c, now)),
        next: rows.length > query.limit && last ? conversationCursor(last.position) : null,
      };
    },
  );

  app.post(
    "/v1/messages/:id/read",
    { onRequest: guard("inbox"), schema: { params: inboundIdParams, querystring: noQuery } },
    async (request, reply) => {
      const { id } = request.params as z.infer<typeof inboundIdParams>;
      const message = await store.inbox.getInbound(id);
      if (!message) throw notFound("inbound message");
      const outcome = await options.readReceipts({
        messageId: message.id,
        contact: message.from,
        ...(message.numberId ? { numberId: message.numberId } : {}),
        signal: AbortSignal.timeout(options.readTimeoutMs),
      });
      if (outcome.kind === "permanent") {
        throw new ApiError(
          502,
          "read_receipt_refused",
          `WhatsApp refused the read receipt (${outcome.code}): ${outcome.message}`.slice(0, 300),
        );
      }
      if (outcome.kind !== "accepted") {
        const retryAfterMs = outcome.kind === "retryable" ? (outcome.minDelayMs ?? 5_000) : 5_000;
        reply.header("retry-after", String(Math.ceil(retryAfterMs / 1000)));
        throw new ApiError(
          503,
          "read_receipt_unavailable",
          `the read receipt could not be sent now (${outcome.code}); try again`,
        );
      }
      const mark = await store.inbox.markInboundRead(message.id, Date.now());
      if (!mark) throw notFound("inbound message");
      request.log.info({ numberId: message.numberId }, "inbound message marked read");
      return { id: message.id, status: "read", read_at: iso(mark.readAt), unread: mark.unread };
    },
  );
};
