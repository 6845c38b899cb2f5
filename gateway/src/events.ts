// The events customers subscribe to with `/v1/webhooks`. Producers (the Meta webhook, OTP verification,
// broadcasts) publish through an `EventSink`; the webhooks plugin persists each event as deliveries before
// `publish` resolves, so an event that was published is never lost.

export const EVENT_TYPES = [
  "message.received",
  "message.status",
  "broadcast.completed",
  "otp.verified",
  "number.linked",
  "number.unlinked",
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface GatewayEvent {
  type: EventType;
  /** The token `sub` that owns what the event is about; undefined for inbound messages, which no token owns. */
  subject?: string;
  data: Record<string, unknown>;
  /** Milliseconds since the epoch. */
  occurredAt: number;
  /**
   * For facts a producer may publish twice (Meta re-delivers its webhooks): a second event with the same key
   * is dropped, so receivers see one event id per fact.
   */
  dedupeKey?: string;
}

export interface EventSink {
  publish(event: GatewayEvent): Promise<void>;
}

/** A sink for when no webhook plugin is wired (tests of other concerns): events are dropped. */
export const noEvents: EventSink = { publish: async () => undefined };
