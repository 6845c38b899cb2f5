import type { TemplateComponent } from "../messages.js";
import type { NewMessage } from "./store.js";

// Persistence of automated-reply rules and of the bookkeeping that keeps a bot from looping (one reply per
// inbound message, one per contact per cooldown).

export type MatchType = "exact" | "contains" | "regex";

export type ReplyContent =
  | { type: "text"; text: string }
  | { type: "template"; template: { name: string; language: string; components?: TemplateComponent[] } };

export interface ReplyRule {
  id: string;
  /** The token `sub` that created the rule; only it may read or change the rule. */
  subject: string;
  matchType: MatchType;
  pattern: string;
  /** Case- and accent-insensitive matching. */
  ignoreCase: boolean;
  /** Lower wins, like the outbox's priorities; ties go to the older rule. */
  priority: number;
  reply: ReplyContent;
  enabled: boolean;
  createdAt: number;
  updatedAt: number;
}

export type NewReplyRule = Omit<ReplyRule, "updatedAt">;
export type ReplyRulePatch = Partial<
  Pick<ReplyRule, "matchType" | "pattern" | "ignoreCase" | "priority" | "reply" | "enabled">
>;

export type AutoReplyResult = "enqueued" | "already_replied" | "cooldown";

export interface AutoReplyClaim {
  inboundId: string;
  contact: string;
  ruleId: string;
  cooldownMs: number;
  message: NewMessage;
}

/** What became of an inbound text: decided once, so a re-delivery is not matched again. */
export type ReplyMatchOutcome =
  | "pending"
  | "replied"
  | "cooldown"
  | "already_replied"
  | "no_match"
  | "budget_exhausted"
  | "skipped";

/** An inbound text waiting to be matched. */
export interface PendingReplyMatch {
  inboundId: string;
  contact: string;
  text: string;
  sentAt: number;
  /** The registry number that received it (none: the default number). */
  numberId?: string;
}

/** How a pending match is settled: with a reply to enqueue, or with the reason there is none. */
export type ReplyMatchSettlement =
  | { kind: "matched"; claim: AutoReplyClaim }
  | { kind: "no_match" | "budget_exhausted" | "skipped" };

export interface RepliesStore {
  /** Inserts the rule unless its owner already has `maxRules`; false then. */
  createReplyRule(rule: NewReplyRule, maxRules: number): Promise<boolean>;
  listReplyRules(subject: string): Promise<ReplyRule[]>;
  getReplyRule(subject: string, id: string): Promise<ReplyRule | undefined>;
  updateReplyRule(
    subject: string,
    id: string,
    patch: ReplyRulePatch,
    now: number,
  ): Promise<ReplyRule | undefined>;
  deleteReplyRule(subject: string, id: string): Promise<boolean>;
  /** Every enabled rule of every owner, best first (priority, then age). */
  activeReplyRules(): Promise<ReplyRule[]>;
  /**
   * In one transaction: refuses an inbound id already answered and a contact answered less than `cooldownMs`
   * ago; otherwise enqueues the reply and records both, so neither a re-delivery nor a crash can send twice.
   */
  claimAutoReply(claim: AutoReplyClaim): Promise<AutoReplyResult>;
  /**
   * Records inbound texts to match ('pending') or not to answer ('skipped'); an id that already has an outcome
   * keeps it. Written before Meta's webhook is acknowledged.
   */
  queueReplyMatches(
    entries: Array<{ inboundId: string; outcome: "pending" | "skipped" }>,
    now: number,
  ): Promise<void>;
  /** The oldest pending matches with their message. */
  pendingReplyMatches(limit: number): Promise<PendingReplyMatch[]>;
  /**
   * In one transaction: for a match, what claimAutoReply does; then the outcome replaces 'pending' (a match
   * already settled is left as it is). Resolves with the outcome recorded.
   */
  settleReplyMatch(
    inboundId: string,
    settlement: ReplyMatchSettlement,
    now: number,
  ): Promise<ReplyMatchOutcome>;
  /** The outcome recorded for an inbound id, if any. */
  replyMatchOutcome(inboundId: string): Promise<ReplyMatchOutcome | undefined>;
  /** Forgets answered inbound ids, decided match outcomes and contacts' last replies older than `before`. */
  pruneAutoReplies(before: number): Promise<void>;
}
