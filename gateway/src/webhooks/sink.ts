import type { EventSink, GatewayEvent } from "../events.js";
import { uuidv7 } from "../ids.js";
import type { Store } from "../store/store.js";

// The persistent EventSink: `publish` resolves once the event and its deliveries are committed, so a
// producer that waits for it before acknowledging (the Meta webhook answers 200 after) never loses an event.

/** The JSON body every receiver gets; its bytes are stored once and signed at each attempt. */
export function eventBody(id: string, event: GatewayEvent): string {
  return JSON.stringify({
    id,
    type: event.type,
    created_at: new Date(event.occurredAt).toISOString(),
    data: event.data,
  });
}

export function createWebhookEventSink(options: {
  store: Store;
  now?: () => number;
  /** Called when deliveries were queued, to wake the dispatcher. */
  onQueued?: () => void;
}): EventSink {
  const now = options.now ?? Date.now;
  return {
    async publish(event) {
      const at = now();
      const id = uuidv7(at);
      const queued = await options.store.recordEvent({ ...event, id }, eventBody(id, event), at);
      if (queued > 0) options.onQueued?.();
    },
  };
}
