import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import { uuidv7 } from "../ids.js";
import { storedTemplate } from "../messages.js";
import { refuseUnsupportedOnWeb, resolveFrom } from "../numbers/from.js";
import { e164Schema } from "../phone.js";
import type { BroadcastRecipient, BroadcastRecord, BroadcastStore } from "../store/broadcasts.js";
import type { NumbersStore } from "../store/numbers.js";
import { recipientTemplate } from "../store/sqlite-broadcasts.js";
import type { TemplateCatalog } from "../templates/catalog.js";
import type { ScopeGuard } from "./auth.js";
import { ApiError, notFound } from "./errors.js";
import { idempotencyClaim, readIdempotencyKey, replayOrConflict } from "./idempotency.js";
import { fromField, messageIdParams, noQuery, templateSchema } from "./schemas.js";

// POST /v1/broadcasts, GET /v1/broadcasts/:id, POST /v1/broadcasts/:id/cancel (scope `broadcasts`).
// The body is refused as a whole only when malformed; an invalid number is reported per item in the 202 and
// the rest is sent. Duplicates (the same E.164 number) are sent once, to their first occurrence.

export const MAX_RECIPIENTS = 100_000;
/** 100,000 recipients with a few parameters each; the edge allows the same for this route. */
export const BROADCAST_BODY_LIMIT = 16 * 1024 * 1024;

const recipientItem = z.union([
  z.string().max(64),
  z.strictObject({
    to: z.string().max(64),
    parameters: z.array(z.string().min(1).max(1024)).max(20).optional(),
  }),
]);

export const broadcastBody = z
  .strictObject({
    name: z.string().min(1).max(200).optional(),
    from: fromField.optional(),
    template: templateSchema.optional(),
    /** Plain text: what a web number sends (and a cloud number, inside each recipient's 24 h window). */
    text: z
      .strictObject({
        body: z
          .string()
          .min(1)
          .refine((s) => [...s].length <= 4096, { error: "must be at most 4096 characters" }),
      })
      .optional(),
    /** Only recipients who wrote to the sending number before (a web number's best protection from bans). */
    only_known_contacts: z.boolean().optional(),
    recipients: z.array(recipientItem).min(1).max(MAX_RECIPIENTS),
  })
  .refine((b) => (b.template === undefined) !== (b.text === undefined), {
    error: "give either template or text",
    path: ["template"],
  });
type BroadcastBody = z.infer<typeof broadcastBody>;

export interface InvalidRecipient {
  index: number;
  to: string;
  reason: string;
}

/** Splits the recipients into the valid, de-duplicated ones and per-item reports. */
export function sortRecipients(items: BroadcastBody["recipients"]): {
  valid: BroadcastRecipient[];
  invalid: InvalidRecipient[];
  duplicates: number;
} {
  const seen = new Set<string>();
  const valid: BroadcastRecipient[] = [];
  const invalid: InvalidRecipient[] = [];
  let duplicates = 0;
  items.forEach((item, index) => {
    const to = typeof item === "string" ? item : item.to;
    if (!e164Schema.safeParse(to).success) {
      invalid.push({ index, to, reason: "not an E.164 phone number such as +14155550123" });
      return;
    }
    if (seen.has(to)) {
      duplicates++;
      return;
    }
    seen.add(to);
    valid.push(typeof item === "string" || !item.parameters ? { to } : { to, parameters: item.parameters });
  });
  return { valid, invalid, duplicates };
}

export function broadcastView(b: BroadcastRecord) {
  return {
    id: b.id,
    name: b.name,
    status: b.status,
    total: b.total,
    queued: Math.max(0, b.total - b.sent - b.failed - b.skipped),
    sent: b.sent,
    delivered: b.delivered,
    read: b.read,
    failed: b.failed,
    not_sent: b.skipped,
    invalid: b.invalid,
    duplicates: b.duplicates,
    created_at: new Date(b.createdAt).toISOString(),
    updated_at: new Date(b.updatedAt).toISOString(),
    completed_at: b.completedAt === null ? null : new Date(b.completedAt).toISOString(),
    from: b.numberId ?? "default",
  };
}

export interface BroadcastRoutesOptions {
  store: BroadcastStore;
  numbers: NumbersStore;
  guard: (scope: "broadcasts") => ScopeGuard;
  /** Wakes the broadcast sender after a commit. */
  onCreated: () => void;
  /** The template is checked against the number's approved templates, with each recipient's parameters. */
  templates: TemplateCatalog;
}

/**
 * The template as each recipient will get it (their parameters replace the body's): checked once per distinct
 * parameter count, the first recipient of each count named when it does not fit.
 */
async function checkBroadcastTemplate(
  templates: TemplateCatalog,
  numberId: string | undefined,
  template: NonNullable<BroadcastBody["template"]>,
  recipients: BroadcastBody["recipients"],
): Promise<void> {
  const stored = storedTemplate(template);
  const first = templates.check(numberId, stored);
  if (first) await first;
  const checkedCounts = new Set<number>();
  for (const [index, item] of recipients.entries()) {
    const parameters = typeof item === "string" ? undefined : item.parameters;
    if (!parameters?.length || checkedCounts.has(parameters.length)) continue;
    checkedCounts.add(parameters.length);
    const checking = templates.check(numberId, recipientTemplate(stored, parameters), {
      componentsLabel: `recipients[${index}].parameters`,
    });
    if (checking) await checking;
  }
}

export const broadcastRoutes: FastifyPluginAsync<BroadcastRoutesOptions> = async (
  app,
  { store, numbers, guard, onCreated, templates },
) => {
  app.post(
    "/v1/broadcasts",
    {
      onRequest: guard("broadcasts"),
      bodyLimit: BROADCAST_BODY_LIMIT,
      schema: { body: broadcastBody, querystring: noQuery, idempotent: true },
    },
    async (request, reply) => {
      const principal = request.principal;
      if (!principal) throw new ApiError(401, "unauthorized", "missing or invalid credentials");
      const body = request.body as BroadcastBody;
      // A web number sends no templates.
      const sending = resolveFrom(numbers, body.from);
      if (body.template) {
        refuseUnsupportedOnWeb(sending, "template");
        await checkBroadcastTemplate(templates, sending.numberId, body.template, body.recipients);
      }
      const key = readIdempotencyKey(request);
      const { valid, invalid, duplicates } = sortRecipients(body.recipients);
      if (valid.length === 0) {
        return reply.status(422).send({
          error: { code: "no_valid_recipients", message: "no recipient is a valid E.164 number" },
          invalid,
        });
      }
      const now = Date.now();
      const id = uuidv7(now);
      const answer = {
        statusCode: 202,
        body: { id, status: "queued", total: valid.length, duplicates, invalid },
      };
      const result = await store.createBroadcast(
        {
          id,
          subject: principal.subject,
          name: body.name ?? null,
          ...(body.template ? { template: storedTemplate(body.template) } : {}),
          ...(body.text ? { text: body.text.body } : {}),
          ...(body.only_known_contacts ? { onlyKnownContacts: true } : {}),
          recipients: valid,
          total: valid.length,
          invalid: invalid.length,
          duplicates,
          createdAt: now,
          ...(sending.numberId ? { numberId: sending.numberId } : {}),
        },
        idempotencyClaim(principal.subject, key, "POST /v1/broadcasts", body, answer),
      );
      if (result.kind !== "created") return replayOrConflict(result, reply);
      request.log.info(
        { broadcastId: id, total: valid.length, invalid: invalid.length, duplicates },
        "broadcast accepted",
      );
      onCreated();
      reply.header("location", `/v1/broadcasts/${id}`);
      return reply.status(202).send(answer.body);
    },
  );

  app.get(
    "/v1/broadcasts/:id",
    { onRequest: guard("broadcasts"), schema: { params: messageIdParams, querystring: noQuery } },
    async (request) => {
      const { id } = request.params as { id: string };
      const broadcast = await store.getBroadcast(id);
      // Another subject's broadcast is indistinguishable from a missing one.
      if (!broadcast || broadcast.subject !== request.principal?.subject) throw notFound("broadcast");
      return broadcastView(broadcast);
    },
  );

  app.post(
    "/v1/broadcasts/:id/cancel",
    { onRequest: guard("broadcasts"), schema: { params: messageIdParams, querystring: noQuery } },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const subject = request.principal?.subject;
      if (!subject) throw new ApiError(401, "unauthorized", "missing or invalid credentials");
      const result = await store.cancelBroadcast(id, subject, Date.now());
      if (result.kind === "not_found") throw notFound("broadcast");
      if (result.kind === "final" && result.broadcast.status === "completed") {
        return reply.status(409).send({
          error: { code: "broadcast_completed", message: "the broadcast has already completed" },
        });
      }
      request.log.info({ broadcastId: id }, "broadcast cancelled");
      return broadcastView(result.broadcast);
    },
  );
};
