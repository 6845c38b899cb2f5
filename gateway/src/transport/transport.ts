import type { OutgoingMessage } from "../messages.js";

export type SendOutcome =
  | { kind: "accepted"; providerMessageId: string | null }
  /** Not sent, or refused in a way that may succeed later: try again after a backoff. */
  | { kind: "retryable"; code: string; message: string; minDelayMs?: number }
  /** Refused for good: record the error on the message. */
  | { kind: "permanent"; code: string; message: string }
  /** The request may have reached the provider but the answer was lost (timeout, reset after sending). */
  | { kind: "in_doubt"; code: string; message: string };

export interface SendContext {
  /** Our message id, echoed back by Meta in status webhooks (`biz_opaque_callback_data`). */
  messageId: string;
  signal: AbortSignal;
  /** The sending number (numbers registry); absent for the default number. */
  numberId?: string;
}

/** A read receipt for an inbound message: the blue ticks, on it and every earlier message of its chat. */
export interface ReadReceipt {
  /** The inbound message's provider id (Meta's wamid, or the WhatsApp Web key id). */
  messageId: string;
  /** Who sent it, E.164 (a web number addresses the chat by it). */
  contact: string;
  /** The number that received it; absent for the default number. */
  numberId?: string;
  signal: AbortSignal;
}

export interface Transport {
  readonly name: string;
  send(message: OutgoingMessage, context: SendContext): Promise<SendOutcome>;
  /** Sends a read receipt through the number that received the message (absent: the transport has none). */
  markRead?(receipt: ReadReceipt): Promise<SendOutcome>;
  close?(): Promise<void>;
}
