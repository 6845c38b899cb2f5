import type { FastifyBaseLogger } from "fastify";
import type { EventSink } from "../events.js";
import { inboundMediaOf } from "../media/inbound-media.js";
import { DEFAULT_NUMBER_ID } from "../numbers/from.js";
import type { AutoReplier } from "../replies/auto-replier.js";
import type { InboundMessage, Store } from "../store/store.js";

// What happens to an inbound message after it was committed, whatever brought it (Meta's webhook, a web number's
// socket): the `message.received` event, its automated-reply match queued as pending, then the mark "processed".
// Committed first, processed after: a crash in between leaves the message unprocessed, and `recover()` at the next
// start hands it over again. Processing twice changes nothing (events are de-duplicated by key, a match is queued
// once per inbound id), so every stored message is processed exactly once in effect. The match itself runs later,
// in the background (replies/auto-replier.ts): the webhook's answer never waits for a regex.

export interface InboundPipeline {
  /** Publishes, queues the automated-reply matches and marks processed; resolves with how many were queued. */
  process(inbound: readonly InboundMessage[], ownNumbers: readonly string[], now: number): Promise<number>;
  /** Processes what a crash left committed but unprocessed; resolves with how many messages. */
  recover(now: number): Promise<number>;
  /** Starts settling the pending matches (those a stop left too). */
  start(): void;
  /** Stops settling; pending matches stay pending for the next start. */
  stop(): Promise<void>;
}

const RECOVERY_BATCH = 500;

export function receivedEvent(m: InboundMessage) {
  return {
    type: "message.received" as const,
    dedupeKey: `message.received:${m.id}`,
    occurredAt: m.sentAt,
    data: {
      message_id: m.id,
      number_id: m.numberId ?? DEFAULT_NUMBER_ID,
      from: m.from,
      type: m.type,
      text: m.text,
      // The type's fields in Meta's shape, as the inbox lists them (inbound/content.ts); null for a type the inbox
      // keeps raw.
      content: m.content ?? null,
      timestamp: new Date(m.sentAt).toISOString(),
      whatsapp: m.raw,
    },
  };
}

export function createInboundPipeline(options: {
  store: Store;
  events?: EventSink;
  autoReplier?: AutoReplier;
  log?: FastifyBaseLogger;
}): InboundPipeline {
  const { store, events, autoReplier } = options;
  async function process(inbound: readonly InboundMessage[], ownNumbers: readonly string[], now: number) {
    if (inbound.length === 0) return 0;
    // Published together, they share the commit batcher's transactions.
    if (events) await Promise.all(inbound.map((m) => events.publish(receivedEvent(m))));
    // Media ids become fetchable (GET /v1/media/:id) once registered; registering twice changes nothing.
    await store.media.registerInboundMedia(inbound.flatMap((m) => inboundMediaOf(m, now)));
    const matches = autoReplier?.matchesToQueue(inbound, ownNumbers, now) ?? [];
    if (matches.length > 0) await store.queueReplyMatches(matches, now);
    await store.markInboundProcessed(
      inbound.map((m) => m.id),
      now,
    );
    const pending = matches.filter((m) => m.outcome === "pending").length;
    if (pending > 0) autoReplier?.notify();
    return pending;
  }
  return {
    process,
    async recover(now) {
      let total = 0;
      for (;;) {
        const batch = await store.unprocessedInbound(RECOVERY_BATCH);
        if (batch.length === 0) break;
        await process(batch, [], now);
        total += batch.length;
        if (batch.length < RECOVERY_BATCH) break;
      }
      if (total > 0)
        options.log?.info({ count: total }, "inbound: processed messages a stop left unprocessed");
      return total;
    },
    start() {
      autoReplier?.notify();
    },
    async stop() {
      await autoReplier?.stop();
    },
  };
}
