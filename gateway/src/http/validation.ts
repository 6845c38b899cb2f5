import type { FastifyInstance, FastifySchema } from "fastify";
import type { ZodType } from "zod";
import { ApiError } from "./errors.js";

// Routes declare zod schemas in `schema.body` / `schema.params` / `schema.querystring` / `schema.headers`;
// this compiler runs them, so a handler only ever sees parsed, typed input. The first issue is reported by
// path and message, never with the rejected value (it may be a secret or a phone number).

export function installZodValidation(app: FastifyInstance): void {
  app.setValidatorCompiler<ZodType>(({ schema, httpPart }) => {
    return (data: unknown) => {
      const result = schema.safeParse(data);
      if (result.success) return { value: result.data };
      const issue = result.error.issues[0];
      const where =
        issue && issue.path.length > 0 ? `${httpPart ?? "input"}.${issue.path.join(".")}` : httpPart;
      const message =
        issue?.code === "unrecognized_keys" ? `unknown field ${issue.keys.join(", ")}` : issue?.message;
      return { error: new ApiError(400, "invalid_request", `${where}: ${message ?? "is invalid"}`) };
    };
  });
  // Response schemas (zod) describe answers for the OpenAPI document (http/openapi.ts); handlers build their views
  // field by field, so the answer is serialized as it is, not re-validated on every request.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
}

/** Type helper: the parsed input of a route whose schemas are zod types. */
export type ZodRouteSchema = FastifySchema & {
  body?: ZodType;
  params?: ZodType;
  querystring?: ZodType;
  headers?: ZodType;
  response?: Record<number | string, ZodType>;
};
