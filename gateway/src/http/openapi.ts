import type { FastifyInstance, FastifyPluginAsync, RouteOptions } from "fastify";
import { z } from "zod";
import type { Scope } from "../auth/index.js";
import { errorAnswer } from "./answers.js";
import type { ScopeGuard } from "./auth.js";
import { idempotencyKey, noQuery } from "./schemas.js";

// The OpenAPI 3.1 document of GET /v1/openapi.json, generated from what the app really registered: every route
// Fastify saw (an onRoute hook installed before any route), the zod schemas it validates with (body, query string,
// path parameters, headers) and, where a route declares them, its answers; the scope its guard requires. A route
// added anywhere is in the document without anyone listing it; `schema.hide` leaves out only the reference page's
// own assets. Nothing here is a secret: the document is public, like the API's shape.

declare module "fastify" {
  interface FastifySchema {
    /** One line for the document; default: the method and path. */
    summary?: string;
    description?: string;
    /** Left out of the document (the reference page's own assets). */
    hide?: boolean;
    /**
     * The route reads `Idempotency-Key` (http/idempotency.ts): the document names the header. Fastify does not
     * validate it as a header schema (its refusal has its own wording); readIdempotencyKey refuses to run on a
     * route that does not declare it, so the document cannot miss one.
     */
    idempotent?: boolean;
  }
}

/** What the document needs of a route, captured as it is registered. */
export interface RegisteredRoute {
  method: string;
  url: string;
  schema: RouteSchema | undefined;
  scope: Scope | undefined;
}

interface RouteSchema {
  summary?: string;
  description?: string;
  hide?: boolean;
  idempotent?: boolean;
  body?: unknown;
  querystring?: unknown;
  params?: unknown;
  headers?: unknown;
  response?: Record<string, unknown>;
}

/** Starts recording routes: call before registering any. HEAD twins of GET routes are left out. */
export function recordRoutes(app: FastifyInstance): RegisteredRoute[] {
  const routes: RegisteredRoute[] = [];
  app.addHook("onRoute", (options: RouteOptions) => {
    const methods = [options.method].flat().filter((m) => m !== "HEAD");
    const guards = [options.onRequest].flat() as Array<ScopeGuard | undefined>;
    const scope = guards.find((g) => typeof g?.scope === "string")?.scope;
    for (const method of methods)
      routes.push({ method, url: options.url, schema: options.schema as RouteSchema | undefined, scope });
  });
  return routes;
}

type JsonSchema = Record<string, unknown>;

const ERROR_RESPONSES: Record<string, string> = {
  BadRequest: "Invalid input: the message names the field (unknown fields are refused too)",
  Unauthorized: "No token, or any problem with it (signature, expiry, audience, issuer, revoked)",
  Forbidden: "The token lacks the scope this operation needs",
  NotFound: "No such resource (or one that belongs to another token subject)",
  PayloadTooLarge: "The request body is too large",
  UnsupportedMediaType: "The body is not JSON",
  Other: "Any other refusal (409, 422, 429, 5xx), in the same error shape",
};

/**
 * zod → JSON Schema (draft 2020-12, the dialect of OpenAPI 3.1): a request as what a client sends (`io: "input"`),
 * an answer as what the gateway writes (`io: "output"`).
 */
function jsonSchemaOf(schema: unknown, where: string, io: "input" | "output" = "input"): JsonSchema {
  if (!(schema instanceof z.ZodType))
    throw new Error(`${where}: not a zod schema; routes declare zod schemas`);
  // A pipe that first reads one field to name it in errors (numbers, links) is documented by what it leads to.
  const documented =
    schema instanceof z.ZodPipe && !(schema.out instanceof z.ZodTransform)
      ? (schema.out as z.ZodType)
      : schema;
  const json = z.toJSONSchema(documented, {
    target: "draft-2020-12",
    io,
    unrepresentable: "any",
  }) as JsonSchema;
  delete json.$schema;
  if (json.$defs) throw new Error(`${where}: recursive or shared schemas ($defs) are not supported here`);
  return json;
}

/** The object schema's properties as OpenAPI parameters (query string, path, headers). */
function parametersOf(schema: unknown, location: "query" | "path" | "header", where: string) {
  const json = jsonSchemaOf(schema, where);
  const properties = (json.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((json.required as string[] | undefined) ?? []);
  return Object.entries(properties).map(([name, property]) => {
    const { description, ...rest } = property;
    return {
      name,
      in: location,
      required: location === "path" || required.has(name),
      ...(typeof description === "string" ? { description } : {}),
      schema: rest,
    };
  });
}

const toOpenApiPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, "{$1}");

function operationId(method: string, url: string): string {
  const words = url
    .split("/")
    .filter((s) => s.length > 0)
    .map((s) => (s.startsWith(":") ? `by_${s.slice(1)}` : s.replace(/[^A-Za-z0-9]+/g, "_")));
  return [method.toLowerCase(), ...words].join("_");
}

function tagOf(url: string): string {
  const segments = url.split("/").filter((s) => s.length > 0);
  // Resources by their first segment; single files (openapi.json) go with the operational routes.
  if (segments[0] === "v1" && segments[1] && !segments[1].includes(".")) return segments[1];
  if (segments[0] === "webhooks") return "meta-webhook";
  return "operations";
}

const errorRef = (name: string) => ({ $ref: `#/components/responses/${name}` });

function operationOf(route: RegisteredRoute) {
  const where = `${route.method} ${route.url}`;
  const schema = route.schema ?? {};
  const parameters = [
    ...(schema.params ? parametersOf(schema.params, "path", `${where} params`) : []),
    ...(schema.querystring ? parametersOf(schema.querystring, "query", `${where} querystring`) : []),
    ...(schema.headers ? parametersOf(schema.headers, "header", `${where} headers`) : []),
  ];
  if (schema.idempotent) {
    parameters.push({
      name: "Idempotency-Key",
      in: "header",
      required: false,
      description:
        "Any 1-255 printable characters, unique per request of this token subject: a retry with the same key and " +
        "body gets the first answer again (header Idempotent-Replayed: true) and nothing is created twice; the same " +
        "key with another body is a 409 idempotency_conflict.",
      schema: jsonSchemaOf(idempotencyKey, `${where} Idempotency-Key`),
    });
  }
  // A path parameter without a schema is still a parameter of the path.
  for (const [, name] of route.url.matchAll(/:([A-Za-z0-9_]+)/g)) {
    if (name && !parameters.some((p) => p.in === "path" && p.name === name))
      parameters.push({ name, in: "path", required: true, schema: { type: "string" } });
  }
  const responses: Record<string, unknown> = {};
  for (const [status, answer] of Object.entries(schema.response ?? {})) {
    const json = jsonSchemaOf(answer, `${where} response ${status}`, "output");
    const { description, ...rest } = json;
    responses[status] = {
      description: typeof description === "string" ? description : "Success",
      content: { "application/json": { schema: rest } },
    };
  }
  if (Object.keys(responses).length === 0) responses["2XX"] = { description: "Success" };
  if (schema.body || schema.querystring || schema.params || schema.headers)
    responses["400"] = errorRef("BadRequest");
  if (route.scope) {
    responses["401"] = errorRef("Unauthorized");
    responses["403"] = errorRef("Forbidden");
  }
  if (route.url.includes(":")) responses["404"] = errorRef("NotFound");
  if (schema.body) {
    responses["413"] = errorRef("PayloadTooLarge");
    responses["415"] = errorRef("UnsupportedMediaType");
  }
  responses.default = errorRef("Other");
  return {
    operationId: operationId(route.method, route.url),
    summary: schema.summary ?? `${route.method} ${route.url}`,
    ...(schema.description ? { description: schema.description } : {}),
    tags: [tagOf(route.url)],
    ...(route.scope
      ? {
          security: [{ bearer: [route.scope] }],
          "x-required-scope": route.scope,
        }
      : { security: [] }),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(schema.body
      ? {
          requestBody: {
            required: true,
            content: { "application/json": { schema: jsonSchemaOf(schema.body, `${where} body`) } },
          },
        }
      : {}),
    responses,
  };
}

export function openApiDocument(routes: readonly RegisteredRoute[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    if (route.schema?.hide) continue;
    const path = toOpenApiPath(route.url);
    paths[path] ??= {};
    paths[path][route.method.toLowerCase()] = operationOf(route);
  }
  const sortedPaths = Object.fromEntries(Object.entries(paths).sort(([a], [b]) => a.localeCompare(b)));
  return {
    openapi: "3.1.0",
    info: {
      title: "wagate gateway API",
      version: "1",
      description:
        "A self-hosted WhatsApp API gateway. Every /v1 route but this document and its reference page needs a " +
        "bearer JWT whose `scope` claim holds the scope the operation names; every error is " +
        '`{"error":{"code","message"}}`. Generated from the schemas the gateway validates requests with.',
    },
    jsonSchemaDialect: "https://spec.openapis.org/oas/3.1/dialect/base",
    security: [{ bearer: [] }],
    paths: sortedPaths,
    components: {
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description:
            "HS256 JWT minted by the operator (`npm run token`, `sudo wagate token`) with exp, aud, iss, jti and a " +
            "space-separated `scope` claim; each operation lists the scope it requires.",
        },
      },
      schemas: { Error: jsonSchemaOf(errorAnswer, "the error answer", "output") },
      responses: Object.fromEntries(
        Object.entries(ERROR_RESPONSES).map(([name, description]) => [
          name,
          {
            description,
            content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
          },
        ]),
      ),
    },
  };
}

export const OPENAPI_PATH = "/v1/openapi.json";

/** GET /v1/openapi.json, public: built once, at the first request (every route is registered by then). */
export const openApiRoutes: FastifyPluginAsync<{ routes: readonly RegisteredRoute[] }> = async (
  app,
  { routes },
) => {
  let document: string | undefined;
  app.get(
    OPENAPI_PATH,
    {
      schema: {
        summary: "This document: the API as OpenAPI 3.1",
        querystring: noQuery,
        response: {
          200: z.looseObject({ openapi: z.literal("3.1.0") }).meta({ description: "OpenAPI 3.1" }),
        },
      },
    },
    async (_request, reply) => {
      document ??= JSON.stringify(openApiDocument(routes));
      return reply.type("application/json; charset=utf-8").send(document);
    },
  );
};
