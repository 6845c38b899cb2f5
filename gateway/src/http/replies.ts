import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import { uuidv7 } from "../ids.js";
import { storedTemplate } from "../messages.js";
import {
  MAX_PATTERN_LENGTH,
  MAX_PROGRAM_SIZE_PER_RULE,
  MAX_PROGRAM_SIZE_PER_SUBJECT,
  programSize,
  regexProblem,
} from "../replies/matching.js";
import type { ReplyContent, ReplyRule, ReplyRulePatch } from "../store/replies.js";
import type { Store } from "../store/store.js";
import type { ScopeGuard } from "./auth.js";
import { ApiError, notFound, unauthorized } from "./errors.js";
import { noQuery, templateSchema } from "./schemas.js";

// /v1/replies: a token's automated-reply rules (scope `replies`). Each token `sub` sees and edits only its own
// rules; all enabled rules answer inbound messages (see replies/auto-replier.ts).

export interface RepliesRoutesOptions {
  store: Store;
  guard: (scope: "replies") => ScopeGuard;
  maxRulesPerSubject: number;
}

const replyContent = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("text"), text: z.string().min(1).max(4096) }),
  z.strictObject({ type: z.literal("template"), template: templateSchema }),
]);

const ruleFields = {
  match: z.enum(["exact", "contains", "regex"]),
  pattern: z.string().min(1).max(MAX_PATTERN_LENGTH),
  ignore_case: z.boolean(),
  priority: z.number().int().min(0).max(1_000_000),
  reply: replyContent,
  enabled: z.boolean(),
};

const createBody = z.strictObject({
  ...ruleFields,
  ignore_case: ruleFields.ignore_case.default(true),
  priority: ruleFields.priority.default(100),
  enabled: ruleFields.enabled.default(true),
});
/** Meta's `{ code }` language is stored as its code, like the templates of POST /v1/messages. */
function storedReply(reply: z.infer<typeof replyContent>): ReplyContent {
  return reply.type === "template" ? { type: "template", template: storedTemplate(reply.template) } : reply;
}

const patchBody = z
  .strictObject(ruleFields)
  .partial()
  .refine((b) => Object.keys(b).length > 0, { error: "nothing to change" });
const idParams = z.strictObject({ id: z.uuid() });

function view(rule: ReplyRule) {
  return {
    id: rule.id,
    match: rule.matchType,
    pattern: rule.pattern,
    ignore_case: rule.ignoreCase,
    priority: rule.priority,
    reply: rule.reply,
    enabled: rule.enabled,
    created_at: new Date(rule.createdAt).toISOString(),
    updated_at: new Date(rule.updatedAt).toISOString(),
  };
}

function refuseBadRegex(match: string, pattern: string, ignoreCase: boolean): void {
  if (match !== "regex") return;
  const problem = regexProblem(pattern, ignoreCase);
  if (problem) throw new ApiError(422, "invalid_regex", `pattern: ${problem}`);
}

/**
 * Refuses a regex whose compiled program is too large, alone or with the subject's other regex rules (`except`:
 * the rule being changed). Matching costs input length × program size (see matching.ts).
 */
async function refuseCostlyRegex(
  store: Store,
  subject: string,
  rule: { match: string; pattern: string; ignoreCase: boolean },
  except?: string,
): Promise<void> {
  if (rule.match !== "regex") return;
  const size = programSize(rule.pattern, rule.ignoreCase);
  if (size > MAX_PROGRAM_SIZE_PER_RULE) {
    throw new ApiError(
      422,
      "regex_too_large",
      `pattern: compiles to ${size} instructions, at most ${MAX_PROGRAM_SIZE_PER_RULE} per rule`,
    );
  }
  let total = size;
  for (const other of await store.listReplyRules(subject)) {
    if (other.id === except || other.matchType !== "regex") continue;
    try {
      total += programSize(other.pattern, other.ignoreCase);
    } catch {
      // A rule RE2 refuses never runs.
    }
  }
  if (total > MAX_PROGRAM_SIZE_PER_SUBJECT) {
    throw new ApiError(
      422,
      "regex_too_large",
      `pattern: this token subject's regex rules would compile to ${total} instructions together, at most ${MAX_PROGRAM_SIZE_PER_SUBJECT}`,
    );
  }
}

export const repliesRoutes: FastifyPluginAsync<RepliesRoutesOptions> = async (app, options) => {
  const { store, guard } = options;
  const subjectOf = (principal: { subject: string } | null) => {
    if (!principal) throw unauthorized();
    return principal.subject;
  };

  app.post(
    "/v1/replies",
    { onRequest: guard("replies"), schema: { body: createBody, querystring: noQuery } },
    async (request, reply) => {
      const subject = subjectOf(request.principal);
      const body = request.body as z.infer<typeof createBody>;
      refuseBadRegex(body.match, body.pattern, body.ignore_case);
      await refuseCostlyRegex(store, subject, {
        match: body.match,
        pattern: body.pattern,
        ignoreCase: body.ignore_case,
      });
      const now = Date.now();
      const rule: ReplyRule = {
        id: uuidv7(now),
        subject,
        matchType: body.match,
        pattern: body.pattern,
        ignoreCase: body.ignore_case,
        priority: body.priority,
        reply: storedReply(body.reply),
        enabled: body.enabled,
        createdAt: now,
        updatedAt: now,
      };
      if (!(await store.createReplyRule(rule, options.maxRulesPerSubject))) {
        throw new ApiError(
          422,
          "too_many_rules",
          `at most ${options.maxRulesPerSubject} rules per token subject`,
        );
      }
      return reply.status(201).send(view(rule));
    },
  );

  app.get(
    "/v1/replies",
    { onRequest: guard("replies"), schema: { querystring: noQuery } },
    async (request) => {
      const rules = await store.listReplyRules(subjectOf(request.principal));
      return { data: rules.map(view) };
    },
  );

  app.get(
    "/v1/replies/:id",
    { onRequest: guard("replies"), schema: { params: idParams, querystring: noQuery } },
    async (request) => {
      const { id } = request.params as { id: string };
      const rule = await store.getReplyRule(subjectOf(request.principal), id);
      if (!rule) throw notFound("rule");
      return view(rule);
    },
  );

  app.patch(
    "/v1/replies/:id",
    { onRequest: guard("replies"), schema: { params: idParams, body: patchBody, querystring: noQuery } },
    async (request) => {
      const subject = subjectOf(request.principal);
      const { id } = request.params as { id: string };
      const body = request.body as z.infer<typeof patchBody>;
      const current = await store.getReplyRule(subject, id);
      if (!current) throw notFound("rule");
      const next = {
        match: body.match ?? current.matchType,
        pattern: body.pattern ?? current.pattern,
        ignoreCase: body.ignore_case ?? current.ignoreCase,
      };
      refuseBadRegex(next.match, next.pattern, next.ignoreCase);
      // Only a change of what compiles is checked: a legacy rule past the caps may still be disabled.
      if (body.match !== undefined || body.pattern !== undefined || body.ignore_case !== undefined)
        await refuseCostlyRegex(store, subject, next, id);
      const patch: ReplyRulePatch = {
        ...(body.match !== undefined ? { matchType: body.match } : {}),
        ...(body.pattern !== undefined ? { pattern: body.pattern } : {}),
        ...(body.ignore_case !== undefined ? { ignoreCase: body.ignore_case } : {}),
        ...(body.priority !== undefined ? { priority: body.priority } : {}),
        ...(body.reply !== undefined ? { reply: storedReply(body.reply) } : {}),
        ...(body.enabled !== undefined ? { enabled: body.enabled } : {}),
      };
      const updated = await store.updateReplyRule(subject, id, patch, Date.now());
      if (!updated) throw notFound("rule");
      return view(updated);
    },
  );

  app.delete(
    "/v1/replies/:id",
    { onRequest: guard("replies"), schema: { params: idParams, querystring: noQuery } },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      if (!(await store.deleteReplyRule(subjectOf(request.principal), id))) throw notFound("rule");
      return reply.status(204).send();
    },
  );
};
