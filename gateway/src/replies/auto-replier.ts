import type { FastifyBaseLogger } from "fastify";
import { uuidv7 } from "../ids.js";
import { type OutgoingMessage, PRIORITY } from "../messages.js";
import type { PendingReplyMatch, ReplyMatchSettlement, ReplyRule } from "../store/replies.js";
import type { InboundMessage, Store } from "../store/store.js";
import { createMatchRunner, type MatchRunner } from "./match-runner.js";
import { foldText } from "./matching.js";

// Answers inbound messages with the best matching rule, through the outbox at interactive priority. No loops:
// only inside the 24 h customer-service window that inbound message opened, at most one automated reply per
// contact per cooldown, never to the gateway's own number, never twice for one inbound id (Meta re-delivers).
//
// Rules belong to the token `sub` that created them (only it sees and edits them), but they answer every number
// the gateway serves, from the number that received: for each inbound message every enabled rule of every sub is considered,
// best priority first, and the reply is sent on behalf of the winning rule's owner. A customer gets one answer,
// not one per backend client.
//
// Matching happens after Meta's webhook is answered. The webhook records each inbound text as a pending match in
// the transaction that stores it (`queue`), and this replier settles pending matches one at a time in the
// background: exact and contains rules on the event loop (cheap), regex rules in a worker thread under a time
// budget per message (match-runner.ts). The outcome — replied, no match, budget exhausted, ... — is committed
// with the reply it enqueues, so a re-delivery finds it and costs nothing, and a restart resumes what was pending.

export const CUSTOMER_SERVICE_WINDOW_MS = 24 * 3_600_000;
/**
 * How long answered inbound ids are remembered: past Meta's longest re-delivery period (7 days) and the window,
 * a re-delivered message is outside the window anyway. Contacts are forgotten once past the cooldown too.
 */
const REMEMBER_ANSWERED_MS = 8 * 24 * 3_600_000;
const HOUSEKEEPING_INTERVAL_MS = 3_600_000;
/** Regex time per inbound message, all regex rules of all subjects together. */
export const DEFAULT_MATCH_BUDGET_MS = 1_000;
const PENDING_BATCH = 32;

export interface AutoReplierOptions {
  store: Store;
  cooldownMs: number;
  /** Numbers and ids that are the gateway itself (config, and each webhook's `metadata`). */
  ownNumbers?: readonly string[];
  /** Wakes the outbox after a reply was enqueued. */
  onEnqueued?: () => void;
  log?: FastifyBaseLogger;
  /** Regex time per message; past it, regex rules not yet tried count as not matching. */
  budgetMs?: number;
  /** Whether a registry number is on the web transport (which sends no templates). */
  isWebNumber?: (numberId: string) => boolean;
}

export interface AutoReplier {
  /** Which inbound texts to match (pending) and which never to answer (skipped); the webhook persists them. */
  matchesToQueue(
    inbound: readonly InboundMessage[],
    ownNumbers: readonly string[],
    now: number,
  ): Array<{ inboundId: string; outcome: "pending" | "skipped" }>;
  /** Settles pending matches in the background (after a webhook committed some, and at start). */
  notify(): void;
  /** Stops settling (the pending ones stay pending for the next start) and stops the worker thread. */
  stop(): Promise<void>;
}

const digits = (value: string) => value.replace(/[^0-9]/g, "");

function ruleMatchesPlainly(rule: ReplyRule, text: string, folded: string): boolean {
  switch (rule.matchType) {
    case "exact":
      return rule.ignoreCase
        ? folded.trim() === foldText(rule.pattern).trim()
        : text.trim() === rule.pattern.trim();
    case "contains":
      return rule.ignoreCase ? folded.includes(foldText(rule.pattern)) : text.includes(rule.pattern);
    case "regex":
      return false;
  }
}

export function createAutoReplier(options: AutoReplierOptions): AutoReplier {
  const { store } = options;
  const runner: MatchRunner = createMatchRunner({ budgetMs: options.budgetMs ?? DEFAULT_MATCH_BUDGET_MS });
  const configured = (options.ownNumbers ?? []).map(digits).filter((d) => d.length > 0);
  let lastHousekeeping = 0;
  let running: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  /** The best rule for `text`: the first plain match, unless a regex rule ranked before it matches. */
  async function bestRule(
    rules: readonly ReplyRule[],
    text: string,
  ): Promise<{ rule?: ReplyRule; exhausted: boolean }> {
    const folded = foldText(text);
    const plain = rules.findIndex((rule) => ruleMatchesPlainly(rule, text, folded));
    const before = (plain === -1 ? rules : rules.slice(0, plain)).filter((r) => r.matchType === "regex");
    const plainRule = plain === -1 ? undefined : rules[plain];
    if (before.length === 0) return { ...(plainRule ? { rule: plainRule } : {}), exhausted: false };
    let outcome: Awaited<ReturnType<MatchRunner["firstMatch"]>>;
    try {
      outcome = await runner.firstMatch(
        before.map((r) => ({
          id: r.id,
          pattern: r.pattern,
          ignoreCase: r.ignoreCase,
          updatedAt: r.updatedAt,
        })),
        text,
      );
    } catch (error) {
      if (stopped) throw error;
      // The worker died on this message (out of its heap, for instance): counted like a spent budget.
      options.log?.warn({ err: error }, "automated replies: the regex worker stopped during a match");
      outcome = { kind: "budget_exhausted" };
    }
    if (outcome.kind === "matched") {
      const rule = before.find((r) => r.id === outcome.ruleId);
      if (rule) return { rule, exhausted: false };
    }
    return { ...(plainRule ? { rule: plainRule } : {}), exhausted: outcome.kind === "budget_exhausted" };
  }

  async function settle(pending: PendingReplyMatch, rules: readonly ReplyRule[]): Promise<void> {
    const now = Date.now();
    let settlement: ReplyMatchSettlement;
    if (
      pending.text === "" ||
      now - pending.sentAt >= CUSTOMER_SERVICE_WINDOW_MS ||
      configured.includes(digits(pending.contact))
    ) {
      settlement = { kind: "skipped" };
    } else {
      const best = await bestRule(rules, pending.text);
      if (best.exhausted)
        options.log?.warn(
          { inbound: pending.inboundId, rules: rules.length },
          "automated replies: regex budget spent, the regex rules not yet tried counted as not matching",
        );
      // The reply leaves from the number that received the message; a web number cannot send a template.
      const rule =
        best.rule?.reply.type === "template" && pending.numberId && options.isWebNumber?.(pending.numberId)
          ? undefined
          : best.rule;
      if (!rule) {
        settlement = { kind: best.exhausted ? "budget_exhausted" : "no_match" };
      } else {
        const outgoing: OutgoingMessage =
          rule.reply.type === "text"
            ? { type: "text", to: pending.contact, text: { body: rule.reply.text } }
            : { type: "template", to: pending.contact, template: rule.reply.template };
        settlement = {
          kind: "matched",
          claim: {
            inboundId: pending.inboundId,
            contact: pending.contact,
            ruleId: rule.id,
            cooldownMs: options.cooldownMs,
            message: {
              id: uuidv7(now),
              subject: rule.subject,
              kind: outgoing.type,
              message: outgoing,
              priority: PRIORITY.interactive,
              createdAt: now,
              ...(pending.numberId ? { numberId: pending.numberId } : {}),
            },
          },
        };
      }
    }
    const outcome = await store.settleReplyMatch(pending.inboundId, settlement, Date.now());
    if (outcome === "replied") options.onEnqueued?.();
  }

  async function drain(): Promise<void> {
    while (!stopped) {
      const now = Date.now();
      if (now - lastHousekeeping > HOUSEKEEPING_INTERVAL_MS) {
        lastHousekeeping = now;
        await store.pruneAutoReplies(now - Math.max(REMEMBER_ANSWERED_MS, options.cooldownMs));
      }
      const pending = await store.pendingReplyMatches(PENDING_BATCH);
      if (pending.length === 0) return;
      const rules = await store.activeReplyRules();
      for (const match of pending) {
        if (stopped) return;
        await settle(match, rules);
      }
    }
  }

  function notify(): void {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = (async () => {
      do {
        again = false;
        await drain();
      } while (again && !stopped);
    })()
      .catch((error: unknown) => {
        // The pending matches stay pending: the next webhook (or restart) retries them.
        if (!stopped)
          options.log?.error({ err: error }, "automated replies: settling pending matches failed");
      })
      .finally(() => {
        running = undefined;
      });
  }

  return {
    matchesToQueue(inbound, ownNumbers, now) {
      const own = new Set([...configured, ...ownNumbers.map(digits).filter((d) => d.length > 0)]);
      return inbound
        .filter((m) => m.text !== null)
        .map((m) => ({
          inboundId: m.id,
          outcome:
            now - m.sentAt >= CUSTOMER_SERVICE_WINDOW_MS || own.has(digits(m.from))
              ? ("skipped" as const)
              : ("pending" as const),
        }));
    },
    notify,
    async stop() {
      stopped = true;
      await runner.close();
      await running;
    },
  };
}
