import type { SendError } from "./store.js";

// Persistence of the numbers registry: the numbers this gateway speaks for besides the default one (configured by
// WHATSAPP_*), each on a transport, with its secrets sealed: a cloud number's access token, a web number's
// session (Baileys' credentials and signal keys). Nothing here is ever returned by the API in clear.

export type NumberTransport = "cloud" | "web";

/**
 * `active`: a cloud number (its token is checked by Meta at the first send). A web number is `unlinked` until an
 * admin links it, `linking` during an attempt, then `connected` or `disconnected` (its socket is down and being
 * re-established; messages wait). A logout by the phone makes it `unlinked` again.
 */
export type NumberStatus = "active" | "unlinked" | "linking" | "connected" | "disconnected";

export interface NumberRecord {
  id: string;
  name: string;
  transport: NumberTransport;
  status: NumberStatus;
  /** The number itself (E.164) once known: given for cloud, learnt at linking for web. */
  phone: string | null;
  /** Cloud: Meta's phone number id (routes its webhooks here). */
  phoneNumberId: string | null;
  wabaId: string | null;
  /** Cloud: the sealed access token. */
  credential: Buffer | null;
  lastConnectedAt: number | null;
  statusChangedAt: number;
  createdAt: number;
  updatedAt: number;
}

export interface NewNumber {
  id: string;
  name: string;
  transport: NumberTransport;
  status: NumberStatus;
  phone?: string;
  phoneNumberId?: string;
  wabaId?: string;
  credential?: Buffer;
  createdAt: number;
}

export interface NumberPatch {
  name?: string;
  phone?: string | null;
  phoneNumberId?: string;
  wabaId?: string | null;
  credential?: Buffer;
}

export type NumberWriteResult =
  | { kind: "ok"; number: NumberRecord }
  | { kind: "not_found" }
  | { kind: "conflict"; field: "name" | "cloud.phone_number_id" };

export interface NumberStatusChange {
  status: NumberStatus;
  phone?: string | null;
  connectedAt?: number;
}

export interface NumbersStore {
  createNumber(number: NewNumber): Promise<NumberWriteResult>;
  listNumbers(): Promise<NumberRecord[]>;
  getNumber(id: string): Promise<NumberRecord | undefined>;
  /**
   * The hot path (every send that names `from`): an in-memory copy of the registry, re-read when any process
   * changed it (a generation row the store's triggers bump), so two gateways on one database never disagree for
   * longer than one turn of the event loop.
   */
  cachedNumber(id: string): NumberRecord | undefined;
  /** The cloud number Meta's webhooks name by `metadata.phone_number_id`. */
  cachedNumberByPhoneNumberId(phoneNumberId: string): NumberRecord | undefined;
  updateNumber(id: string, patch: NumberPatch, now: number): Promise<NumberWriteResult>;
  setNumberStatus(id: string, change: NumberStatusChange, now: number): Promise<NumberRecord | undefined>;
  /**
   * Deletes the number and its session keys in one transaction; its queued messages fail with `error`
   * (messages already in flight finish). false when there was no such number.
   */
  deleteNumber(id: string, error: SendError, now: number): Promise<boolean>;

  /** Sealed session values of a web number by key ("creds", "<type>:<id>"); missing keys are absent. */
  readSessionKeys(numberId: string, keys: readonly string[]): Promise<Map<string, Buffer>>;
  /** Writes (value) or removes (null) session values in one transaction. */
  writeSessionKeys(numberId: string, entries: ReadonlyArray<readonly [string, Buffer | null]>): Promise<void>;
  /** Removes every session value of the number (logout, unlink). */
  wipeSession(numberId: string): Promise<void>;
  /** Fails the number's queued messages (a web number unlinked for longer than the wait). */
  failQueuedMessages(numberId: string, error: SendError, now: number): Promise<number>;
  /** Keeps a Meta webhook addressed to a phone number id nobody registered, for an operator to look at. */
  recordUnroutedWebhook(phoneNumberId: string, body: string, now: number): Promise<void>;
}
