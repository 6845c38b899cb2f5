import { uuidv7 } from "../ids.js";
import { type OutgoingMessage, PRIORITY } from "../messages.js";
import type { InboundMessage, Store } from "../store/store.js";
import { createRuleMatcher } from "./matching.js";

// Answers inbound messages with the best matching rule, through the outbox at interactive priority. No loops:
// only inside the 24 h customer-service window that inbound message opened, at most one automated reply per
// contact per cooldown, never to the gateway's own number, never twice for one inbound id (Meta re-delivers).
//
// Rules belong to the token `sub` that created them (only it sees and edits them), but they all answer the one
// WhatsApp number the gateway serves: for each inbound message every enabled rule of every sub is considered,
// best priority first, and the reply is sent on behalf of the winning rule's owner. A customer gets one answer,
// not one per backend client.

export const CUSTOMER_SERVICE_WINDOW_MS = 24 * 3_600_000;
/**
 * How long answered inbound ids are remembered: past Meta's longest re-delivery period (7 days) and the window,
 * a re-delivered message is outside the window anyway. Contacts are forgotten once past the cooldown too.
 */
const REMEMBER_ANSWERED_MS = 8 * 24 * 3_600_000;
const HOUSEKEEPING_INTERVAL_MS = 3_600_000;

export interface AutoReplierOptions {
  store: Store;
  cooldownMs: number;
  /** Numbers and ids that are the gateway itself (config, and each webhook's `metadata`). */
  ownNumbers?: readonly string[];
  /** Whether a registry number is on the web transport (which sends no templates). */
  isWebNumber?: (numberId: string) => boolean;
}

export interface AutoReplier {
  /** Resolves with how many replies were enqueued. */
  handle(inbound: readonly InboundMessage[], ownNumbers: readonly string[], now: number): Promise<number>;
}

const digits = (value: string) => value.replace(/[^0-9]/g, "");

export function createAutoReplier(options: AutoReplierOptions): AutoReplier {
  const matcher = createRuleMatcher();
  const configured = (options.ownNumbers ?? []).map(digits).filter((d) => d.length > 0);
  let lastHousekeeping = 0;

  return {
    async handle(inbound, ownNumbers, now) {
      if (now - lastHousekeeping > HOUSEKEEPING_INTERVAL_MS) {
        lastHousekeeping = now;
        await options.store.pruneAutoReplies(now - Math.max(REMEMBER_ANSWERED_MS, options.cooldownMs));
      }
      const candidates = inbound.filter(
        (m) => m.text !== null && now - m.sentAt < CUSTOMER_SERVICE_WINDOW_MS,
      );
      if (candidates.length === 0) return 0;
      const own = new Set([...configured, ...ownNumbers.map(digits).filter((d) => d.length > 0)]);
      const rules = await options.store.activeReplyRules();
      if (rules.length === 0) return 0;
      let enqueued = 0;
      for (const message of candidates) {
        if (own.has(digits(message.from))) continue;
        const rule = matcher.firstMatch(rules, message.text ?? "");
        if (!rule) continue;
        // The reply leaves from the number that received the message; a web number cannot send a template.
        if (message.numberId && rule.reply.type === "template" && options.isWebNumber?.(message.numberId))
          continue;
        const outgoing: OutgoingMessage =
          rule.reply.type === "text"
            ? { type: "text", to: message.from, text: { body: rule.reply.text } }
            : { type: "template", to: message.from, template: rule.reply.template };
        const result = await options.store.claimAutoReply({
          inboundId: message.id,
          contact: message.from,
          ruleId: rule.id,
          cooldownMs: options.cooldownMs,
          message: {
            id: uuidv7(now),
            subject: rule.subject,
            kind: outgoing.type,
            message: outgoing,
            priority: PRIORITY.interactive,
            createdAt: now,
            ...(message.numberId ? { numberId: message.numberId } : {}),
          },
        });
        if (result === "enqueued") enqueued++;
      }
      return enqueued;
    },
  };
}
