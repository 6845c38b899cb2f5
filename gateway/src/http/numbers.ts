import type { FastifyPluginAsync } from "fastify";
import { z } from "zod";
import type { Config } from "../config.js";
import type { Sealer } from "../crypto/sealer.js";
import type { EventSink } from "../events.js";
import { uuidv7 } from "../ids.js";
import { DEFAULT_NUMBER_ID } from "../numbers/from.js";
import { numberCredentialAssociatedData } from "../numbers/sealing.js";
import { e164Schema } from "../phone.js";
import type { NumberRecord, NumbersStore, NumberWriteResult } from "../store/numbers.js";
import type { ScopeGuard } from "./auth.js";
import { ApiError, notFound } from "./errors.js";
import { noQuery } from "./schemas.js";

// The numbers registry (scope `admin`): POST /v1/numbers, GET /v1/numbers, GET|PATCH|DELETE /v1/numbers/:id, and
// POST /v1/numbers/:id/link for web numbers. Secrets (a cloud number's access token, a web number's session) are
// sealed before they are stored and never returned: a view says only whether a token is set.

const numberName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, {
    error: "letters, digits, '_', '.' and '-', starting with a letter or digit",
  });
const metaId = z.string().regex(/^[0-9]{1,32}$/, { error: "must be Meta's numeric id" });
const accessToken = z
  .string()
  .min(16, { error: "must be at least 16 characters" })
  .max(4096)
  .regex(/^[\x21-\x7e]+$/, { error: "must be printable ASCII without spaces" });

const cloudCreate = z.strictObject({
  phone_number_id: metaId,
  access_token: accessToken,
  waba_id: metaId.optional(),
});
const cloudPatch = z
  .strictObject({
    phone_number_id: metaId.optional(),
    access_token: accessToken.optional(),
    waba_id: metaId.optional(),
  })
  .refine((c) => Object.keys(c).length > 0, { error: "give at least one field" });

/** Checked first, so an unknown transport is named as such rather than as a mismatch of the other fields. */
const transportField = z.looseObject({
  transport: z.enum(["cloud", "web"], { error: "must be cloud or web" }),
});

const createBody = z.discriminatedUnion("transport", [
  z.strictObject({
    name: numberName,
    transport: z.literal("cloud"),
    phone: e164Schema.optional(),
    cloud: cloudCreate,
  }),
  z.strictObject({ name: numberName, transport: z.literal("web") }),
]);
const createSchema = transportField.pipe(createBody);
type CreateBody = z.infer<typeof createBody>;

const patchBody = z
  .strictObject({
    name: numberName.optional(),
    phone: e164Schema.nullable().optional(),
    cloud: cloudPatch.optional(),
  })
  .refine((b) => Object.keys(b).length > 0, { error: "give at least one field" });
type PatchBody = z.infer<typeof patchBody>;

export const numberIdParams = z.strictObject({
  id: z.union([z.uuid(), z.literal(DEFAULT_NUMBER_ID)], { error: "must be a number id" }),
});

export const linkBody = z.discriminatedUnion("method", [
  z.strictObject({ method: z.literal("qr") }),
  z.strictObject({ method: z.literal("code"), phone: e164Schema }),
]);
const linkSchema = z
  .looseObject({ method: z.enum(["qr", "code"], { error: "must be qr or code" }) })
  .pipe(linkBody);
export type LinkRequest = z.infer<typeof linkBody>;

/** What the web transport answers to a link request (transport/web). */
export type LinkAnswer =
  | { kind: "qr"; qr: string; pngDataUrl: string; expiresAt: number }
  | { kind: "code"; code: string; expiresAt: number }
  | { kind: "busy" }
  | { kind: "already_linked" }
  | { kind: "unavailable"; reason: string };

/** The web numbers' side the routes need: linking, and ending a session before the number is deleted. */
export interface WebNumbersControl {
  link(number: NumberRecord, request: LinkRequest): Promise<LinkAnswer>;
  /** Logs the session out (if any) and forgets it; the store's delete wipes what is stored. */
  forget(numberId: string): Promise<void>;
}

export function numberView(n: NumberRecord) {
  return {
    id: n.id,
    name: n.name,
    transport: n.transport,
    status: n.status,
    default: false,
    phone: n.phone,
    cloud:
      n.transport === "cloud"
        ? { phone_number_id: n.phoneNumberId, waba_id: n.wabaId, access_token_set: n.credential !== null }
        : null,
    last_connected_at: n.lastConnectedAt === null ? null : new Date(n.lastConnectedAt).toISOString(),
    status_changed_at: new Date(n.statusChangedAt).toISOString(),
    created_at: new Date(n.createdAt).toISOString(),
    updated_at: new Date(n.updatedAt).toISOString(),
  };
}

/** The number configured by WHATSAPP_*: listed first, not editable through the API. */
function defaultNumberView(config: Config) {
  return {
    id: DEFAULT_NUMBER_ID,
    name: DEFAULT_NUMBER_ID,
    transport: config.WHATSAPP_TRANSPORT,
    status: "active",
    default: true,
    phone: null,
    cloud:
      config.WHATSAPP_TRANSPORT === "cloud"
        ? { phone_number_id: config.WHATSAPP_PHONE_NUMBER_ID ?? null, waba_id: null, access_token_set: true }
        : null,
    last_connected_at: null,
    status_changed_at: null,
    created_at: null,
    updated_at: null,
  };
}

export interface NumbersRoutesOptions {
  config: Config;
  numbers: NumbersStore;
  sealer: Sealer;
  guard: (scope: "admin") => ScopeGuard;
  events: EventSink;
  web?: WebNumbersControl;
}

function conflict(result: Extract<NumberWriteResult, { kind: "conflict" }>): ApiError {
  return new ApiError(
    409,
    result.field === "name" ? "name_taken" : "phone_number_id_taken",
    `${result.field}: another number already has this value`,
  );
}

function defaultIsReadOnly(): ApiError {
  return new ApiError(
    422,
    "default_number",
    "id: the default number is configured by WHATSAPP_* settings, not through the API",
  );
}

export const numbersRoutes: FastifyPluginAsync<NumbersRoutesOptions> = async (app, options) => {
  const { config, numbers, sealer, guard, events } = options;
  const admin = guard("admin");

  async function existing(id: string): Promise<NumberRecord> {
    const number = await numbers.getNumber(id);
    if (!number) throw notFound("number");
    return number;
  }

  app.post(
    "/v1/numbers",
    { onRequest: admin, schema: { body: createSchema, querystring: noQuery } },
    async (request, reply) => {
      const body = request.body as CreateBody;
      const now = Date.now();
      const id = uuidv7(now);
      const result = await numbers.createNumber(
        body.transport === "cloud"
          ? {
              id,
              name: body.name,
              transport: "cloud",
              status: "active",
              ...(body.phone ? { phone: body.phone } : {}),
              phoneNumberId: body.cloud.phone_number_id,
              ...(body.cloud.waba_id ? { wabaId: body.cloud.waba_id } : {}),
              credential: sealer.seal(body.cloud.access_token, numberCredentialAssociatedData(id)),
              createdAt: now,
            }
          : { id, name: body.name, transport: "web", status: "unlinked", createdAt: now },
      );
      if (result.kind === "conflict") throw conflict(result);
      if (result.kind !== "ok") throw new ApiError(500, "internal", "internal error");
      request.log.info(
        { numberId: id, transport: body.transport, by: request.principal?.subject },
        "audit: number created",
      );
      reply.header("location", `/v1/numbers/${id}`);
      return reply.status(201).send(numberView(result.number));
    },
  );

  app.get("/v1/numbers", { onRequest: admin, schema: { querystring: noQuery } }, async () => ({
    numbers: [defaultNumberView(config), ...(await numbers.listNumbers()).map(numberView)],
  }));

  app.get(
    "/v1/numbers/:id",
    { onRequest: admin, schema: { params: numberIdParams, querystring: noQuery } },
    async (request) => {
      const { id } = request.params as { id: string };
      if (id === DEFAULT_NUMBER_ID) return defaultNumberView(config);
      return numberView(await existing(id));
    },
  );

  app.patch(
    "/v1/numbers/:id",
    { onRequest: admin, schema: { params: numberIdParams, body: patchBody, querystring: noQuery } },
    async (request) => {
      const { id } = request.params as { id: string };
      if (id === DEFAULT_NUMBER_ID) throw defaultIsReadOnly();
      const body = request.body as PatchBody;
      const number = await existing(id);
      if (body.cloud && number.transport !== "cloud")
        throw new ApiError(422, "invalid_request", "cloud: only cloud numbers have cloud credentials");
      const result = await numbers.updateNumber(
        id,
        {
          ...(body.name !== undefined ? { name: body.name } : {}),
          ...(body.phone !== undefined ? { phone: body.phone } : {}),
          ...(body.cloud?.phone_number_id ? { phoneNumberId: body.cloud.phone_number_id } : {}),
          ...(body.cloud?.waba_id ? { wabaId: body.cloud.waba_id } : {}),
          ...(body.cloud?.access_token
            ? { credential: sealer.seal(body.cloud.access_token, numberCredentialAssociatedData(id)) }
            : {}),
        },
        Date.now(),
      );
      if (result.kind === "not_found") throw notFound("number");
      if (result.kind === "conflict") throw conflict(result);
      request.log.info(
        {
          numberId: id,
          fields: Object.keys(body).concat(
            body.cloud ? Object.keys(body.cloud).map((k) => `cloud.${k}`) : [],
          ),
          by: request.principal?.subject,
        },
        "audit: number changed",
      );
      return numberView(result.number);
    },
  );

  app.delete(
    "/v1/numbers/:id",
    { onRequest: admin, schema: { params: numberIdParams, querystring: noQuery } },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      if (id === DEFAULT_NUMBER_ID) throw defaultIsReadOnly();
      const number = await existing(id);
      if (number.transport === "web") await options.web?.forget(id);
      const now = Date.now();
      const deleted = await numbers.deleteNumber(
        id,
        { code: "number_deleted", message: "the sending number was deleted before this message was sent" },
        now,
      );
      if (!deleted) throw notFound("number");
      if (number.transport === "web" && number.status !== "unlinked") {
        await events.publish({
          type: "number.unlinked",
          occurredAt: now,
          dedupeKey: `number.unlinked:${id}:${now}`,
          data: { number_id: id, name: number.name, reason: "deleted" },
        });
      }
      request.log.info({ numberId: id, by: request.principal?.subject }, "audit: number deleted");
      return reply.status(204).send();
    },
  );

  app.post(
    "/v1/numbers/:id/link",
    { onRequest: admin, schema: { params: numberIdParams, body: linkSchema, querystring: noQuery } },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      if (id === DEFAULT_NUMBER_ID) throw defaultIsReadOnly();
      const body = request.body as LinkRequest;
      const number = await existing(id);
      if (number.transport !== "web") {
        throw new ApiError(
          422,
          "not_a_web_number",
          `transport: number ${number.name} is a cloud number; only web numbers are linked`,
        );
      }
      if (!options.web) throw new ApiError(503, "web_unavailable", "the web transport is not running");
      const answer = await options.web.link(number, body);
      request.log.info(
        { numberId: id, method: body.method, outcome: answer.kind, by: request.principal?.subject },
        "audit: link attempt",
      );
      switch (answer.kind) {
        case "qr":
          return reply.status(202).send({
            number_id: id,
            status: "linking",
            method: "qr",
            qr: answer.qr,
            qr_png: answer.pngDataUrl,
            expires_at: new Date(answer.expiresAt).toISOString(),
          });
        case "code":
          return reply.status(202).send({
            number_id: id,
            status: "linking",
            method: "code",
            code: answer.code,
            expires_at: new Date(answer.expiresAt).toISOString(),
          });
        case "busy":
          throw new ApiError(
            409,
            "link_in_progress",
            "id: a link attempt for this number is already running",
          );
        case "already_linked":
          throw new ApiError(409, "already_linked", "id: this number is linked; unlink (DELETE) it first");
        case "unavailable":
          throw new ApiError(503, "link_unavailable", `link: ${answer.reason}`);
      }
    },
  );
};
