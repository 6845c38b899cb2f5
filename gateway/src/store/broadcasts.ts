import type { TemplateComponent } from "../messages.js";
import type { EnqueueResult, IdempotencyClaim } from "./store.js";

// Persistence of broadcasts: one template to many recipients, sent by the throttled sender
// (broadcasts/sender.ts). Recipients live in their own table and become outbox rows lazily, a few at a time, in
// the same transaction that advances the broadcast's cursor: a recipient is materialised exactly once, and the
// outbox's own crash handling (claims with a lease, in-doubt grace, `biz_opaque_callback_data`) sends it.

export type BroadcastStatus = "queued" | "running" | "completed" | "cancelled";

export interface BroadcastTemplate {
  name: string;
  language: string;
  components?: TemplateComponent[];
}

export interface BroadcastRecipient {
  /** E.164, already validated and de-duplicated. */
  to: string;
  /** Text parameters of the body component for this recipient. */
  parameters?: string[];
}

export interface NewBroadcast {
  id: string;
  subject: string;
  name: string | null;
  /** What is sent: a template (cloud numbers), or plain text (`text`, the only kind a web number sends). */
  template?: BroadcastTemplate;
  text?: string;
  /** Only recipients who wrote to the sending number before get it; the others are counted as not sent. */
  onlyKnownContacts?: boolean;
  /** Iterated once inside the insert transaction. */
  recipients: Iterable<BroadcastRecipient>;
  total: number;
  invalid: number;
  duplicates: number;
  createdAt: number;
  /** The sending number (numbers registry); absent for the default number. */
  numberId?: string;
}

export interface BroadcastRecord {
  id: string;
  subject: string;
  name: string | null;
  status: BroadcastStatus;
  total: number;
  /** Recipients materialised into outbox rows so far (the cursor). */
  materialised: number;
  sent: number;
  delivered: number;
  read: number;
  failed: number;
  /** Recipients never sent because the broadcast was cancelled. */
  skipped: number;
  invalid: number;
  duplicates: number;
  createdAt: number;
  updatedAt: number;
  completedAt: number | null;
  numberId: string | null;
}

export interface MaterialiseOptions {
  now: number;
  /** At most this many recipients become outbox rows. */
  limit: number;
  /** Pair rate: a row to a recipient who had a message within this interval is due only after it. */
  pairIntervalMs: number;
  priority: number;
  /** Only the broadcasts of this sending number (null: the default number): each number has its own pace. */
  numberId: string | null;
}

export type CancelResult =
  | { kind: "cancelled"; broadcast: BroadcastRecord }
  | { kind: "final"; broadcast: BroadcastRecord }
  | { kind: "not_found" };

export interface BroadcastStore {
  /** Commits the broadcast and all its recipients in one transaction (and the idempotency record, if given). */
  createBroadcast(broadcast: NewBroadcast, idempotency?: IdempotencyClaim): Promise<EnqueueResult>;
  getBroadcast(id: string): Promise<BroadcastRecord | undefined>;
  /** Stops materialising and removes this broadcast's rows not yet claimed; rows in flight finish. */
  cancelBroadcast(id: string, subject: string, now: number): Promise<CancelResult>;
  /** Turns the next recipients of active broadcasts (oldest first) into outbox rows; returns how many. */
  materialise(options: MaterialiseOptions): Promise<number>;
  /** Bulk rows in the outbox not yet settled (queued or sending), of one sending number (null: the default). */
  outstandingBulk(priority: number, numberId?: string | null): Promise<number>;
  hasActiveBroadcasts(): Promise<boolean>;
  /** Bulk messages of one sending number created since `since`: a web number's daily cap. */
  bulkSentSince(numberId: string | null, since: number): Promise<number>;
  /** The sending numbers (null: the default number) that have active broadcasts. */
  activeBroadcastNumbers(): Promise<Array<string | null>>;
  /** Running broadcasts whose every recipient was materialised and reached sent or failed. */
  finishedBroadcasts(): Promise<BroadcastRecord[]>;
  /** false when it was already completed or cancelled. */
  markCompleted(id: string, now: number): Promise<boolean>;
}
