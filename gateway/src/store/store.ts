import type { InboundContent } from "../inbound/content.js";
import type { MessageKind, MessageStatus, OutgoingMessage } from "../messages.js";
import type { BroadcastStore } from "./broadcasts.js";
import type { InboxStore } from "./inbox.js";
import type { MediaStore } from "./media.js";
import type { NumbersStore } from "./numbers.js";
import type { RepliesStore } from "./replies.js";
import type { WebhooksStore } from "./webhooks.js";

// What routes and queues need from persistence, and nothing more. Every method is asynchronous so that a
// networked implementation (PostgreSQL, for several gateway instances) can come later without touching callers.
// Times are milliseconds since the epoch.

export interface MessageRecord {
  id: string;
  subject: string;
  kind: MessageKind;
  message: OutgoingMessage;
  /** A sealed secret (an OTP code) the payload refers to; erased once the message is sent or failed. */
  secret: Buffer | null;
  priority: number;
  status: MessageStatus;
  attempts: number;
  nextAttemptAt: number;
  providerMessageId: string | null;
  /** The number it is sent from (numbers registry); null for the default number. */
  numberId: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  createdAt: number;
  updatedAt: number;
}

/** What the outbox needs of a message it claimed: the fewer columns a claim returns, the cheaper it is. */
export type ClaimedMessage = Pick<
  MessageRecord,
  "id" | "message" | "secret" | "priority" | "attempts" | "nextAttemptAt" | "numberId"
> & {
  /** The broadcast it belongs to: its outcome moves that broadcast's counters (store/broadcast-progress.ts). */
  broadcastId: string | null;
};

/** What recording a claimed message's outcome needs to know of it. */
export type ClaimedRef = Pick<ClaimedMessage, "id" | "broadcastId">;

export interface NewMessage {
  id: string;
  subject: string;
  kind: MessageKind;
  message: OutgoingMessage;
  secret?: Buffer;
  priority: number;
  createdAt: number;
  /** The sending number (numbers registry); absent for the default number. */
  numberId?: string;
}

export interface IdempotencyClaim {
  subject: string;
  key: string;
  /** Hash of the route and the parsed body; the same key with another hash is a conflict. */
  requestHash: string;
  /** The answer to store and to replay on retries. */
  response: { statusCode: number; body: unknown };
}

export type EnqueueResult =
  | { kind: "created" }
  | { kind: "replayed"; response: { statusCode: number; body: unknown } }
  | { kind: "conflict" };

export interface SendError {
  code: string;
  message: string;
}

export interface StatusUpdate {
  /** Meta's message id (wamid), or our own id echoed back through `biz_opaque_callback_data`. */
  providerMessageId: string;
  ourMessageId?: string;
  status: "sent" | "delivered" | "read" | "failed";
  at: number;
  error?: SendError;
}

export interface InboundMessage {
  id: string;
  from: string;
  type: string;
  text: string | null;
  sentAt: number;
  raw: unknown;
  /** The number that received it (numbers registry); absent for the default number. */
  numberId?: string;
  /** Its content in Meta's shape (inbound/content.ts); null or absent when the type is not understood. */
  content?: InboundContent | null;
  /** The medium's id (image, video, audio, document, sticker). */
  mediaId?: string | null;
  /** The name the sender gave WhatsApp (Meta's `contacts[].profile.name`, Baileys' `pushName`). */
  profileName?: string | null;
}

export interface WebhookBatchResult {
  statusesApplied: number;
  inboundStored: number;
  duplicates: number;
}

export interface NewOtp {
  id: string;
  subject: string;
  phone: string;
  codeHash: Buffer;
  createdAt: number;
  expiresAt: number;
  maxAttempts: number;
  /** Enqueued in the same transaction, so a code is never stored without its message, nor sent twice. */
  message: NewMessage;
}

/**
 * The cooldown and hourly cap count one token subject's codes to one number: another subject's codes neither
 * use them up nor show through them. The number's own ceiling counts every subject's codes (abuse protection).
 */
export interface OtpLimits {
  cooldownMs: number;
  hourlyLimit: number;
  numberHourlyLimit: number;
}

/** `retryAfterMs` comes from the subject's own codes only; `number_limit` carries none (see OtpLimits). */
export type IssueOtpResult =
  | { kind: "created" }
  | { kind: "cooldown"; retryAfterMs: number }
  | { kind: "hourly_limit"; retryAfterMs: number }
  | { kind: "number_limit" };

export interface OtpAttempt {
  id: string;
  codeHash: Buffer;
}

/** What a sealed secret belongs to: its associated data is derived from this. */
export type SealedSecretOwner =
  | { kind: "message"; id: string }
  | { kind: "webhook_subscription"; id: string }
  /** A cloud number's access token. */
  | { kind: "number_credential"; id: string }
  /** One value of a web number's session (Baileys' credentials or a signal key). */
  | { kind: "number_session"; id: string; key: string }
  /** What a web number needs to fetch an inbound medium again (media.source); `id`: the medium's row id. */
  | { kind: "media_source"; id: string };

export interface Store extends RepliesStore, WebhooksStore {
  /** Broadcasts and their recipients (store/broadcasts.ts). */
  readonly broadcasts: BroadcastStore;
  /** The numbers registry and web numbers' sealed sessions (store/numbers.ts). */
  readonly numbers: NumbersStore;
  /** Listing inbound and outbound messages, conversations, read marks (store/inbox.ts). */
  readonly inbox: InboxStore;
  /** Uploaded media and inbound media ids (store/media.ts). */
  readonly media: MediaStore;
  /** Commits the message (and the idempotency record, when given) before resolving. */
  enqueueMessage(message: NewMessage, idempotency?: IdempotencyClaim): Promise<EnqueueResult>;
  getMessage(id: string): Promise<MessageRecord | undefined>;

  /**
   * Claims up to `limit` due messages, lowest priority number first, marking them `sending` with a lease until
   * `leaseUntil`. A `sending` row whose lease has passed is claimable again (its sender died or timed out).
   */
  claimDueMessages(now: number, limit: number, leaseUntil: number): Promise<ClaimedMessage[]>;
  markSent(message: ClaimedRef, providerMessageId: string | null, now: number): Promise<void>;
  markRetry(message: ClaimedRef, nextAttemptAt: number, error: SendError, now: number): Promise<void>;
  markFailed(message: ClaimedRef, error: SendError, now: number): Promise<void>;

  /** Applies status updates and stores inbound messages in one transaction; re-deliveries change nothing. */
  recordWebhook(
    statuses: StatusUpdate[],
    inbound: InboundMessage[],
    now: number,
  ): Promise<WebhookBatchResult>;

  /** Inbound messages committed but not yet processed (events, automated replies): what a crash left behind. */
  unprocessedInbound(limit: number): Promise<InboundMessage[]>;
  /** Marks inbound messages processed: they are not handed over again at the next start. */
  markInboundProcessed(ids: readonly string[], now: number): Promise<void>;

  /**
   * Passes every sealed secret the database holds (OTP codes waiting to be sent, webhook signing secrets) to
   * `reseal` and stores what it returns in its place, in one transaction. A value `reseal` throws on (nothing can
   * open it) is left as it is and counted as unopenable.
   */
  resealSecrets(
    reseal: (owner: SealedSecretOwner, sealed: Buffer) => Buffer | undefined,
  ): Promise<{ resealed: number; unopenable: number }>;
  revokeToken(jti: string, now: number, reason?: string): Promise<void>;
  isTokenRevoked(jti: string): Promise<boolean>;

  issueOtp(otp: NewOtp, limits: OtpLimits): Promise<IssueOtpResult>;
  /** Spends one attempt on the live code of (subject, phone); undefined when there is none left to try. */
  spendOtpAttempt(subject: string, phone: string, now: number): Promise<OtpAttempt | undefined>;
  /** Marks the code used; false when another request used it first. */
  consumeOtp(id: string, now: number): Promise<boolean>;

  /** Removes idempotency records older than `before`. */
  pruneIdempotencyKeys(before: number): Promise<number>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
