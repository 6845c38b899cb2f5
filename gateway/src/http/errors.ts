import type { FastifyError, FastifyInstance } from "fastify";

// One error shape for every answer that is not a success: {"error":{"code","message"}}. Messages are fixed
// strings chosen here, never an exception's text, so no stack, SQL or secret can leave the process.

export class ApiError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export const unauthorized = () => new ApiError(401, "unauthorized", "missing or invalid credentials");
export const forbidden = () => new ApiError(403, "forbidden", "this token may not do that");
export const notFound = (what = "resource") => new ApiError(404, "not_found", `${what} not found`);

/** Maps Fastify's own errors (parser, limits, routing) to our codes; everything unknown becomes a 500. */
function fromFastifyError(error: FastifyError): ApiError | undefined {
  switch (error.code) {
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ApiError(415, "unsupported_media_type", "content type must be application/json");
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new ApiError(413, "payload_too_large", "request body is too large");
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new ApiError(400, "invalid_json", "request body is empty");
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new ApiError(400, "bad_request", "content-length does not match the body");
    case "FST_ERR_VALIDATION":
      return new ApiError(400, "invalid_request", error.message);
    default:
      break;
  }
  if (
    error instanceof SyntaxError ||
    error.name === "SyntaxError" ||
    error.code === "FST_ERR_CTP_INVALID_JSON_BODY"
  ) {
    return new ApiError(400, "invalid_json", "request body is not valid JSON");
  }
  if (typeof error.statusCode === "number" && error.statusCode >= 400 && error.statusCode < 500) {
    return new ApiError(error.statusCode, "bad_request", "the request could not be processed");
  }
  return undefined;
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const mapped = error instanceof ApiError ? error : fromFastifyError(error);
    if (mapped) {
      if (mapped.statusCode >= 500) request.log.error({ err: error }, "request failed");
      return reply.status(mapped.statusCode).send({ error: { code: mapped.code, message: mapped.message } });
    }
    request.log.error({ err: error }, "unexpected error");
    return reply.status(500).send({ error: { code: "internal", message: "internal error" } });
  });
  app.setNotFoundHandler((_request, reply) =>
    reply.status(404).send({ error: { code: "not_found", message: "no such route" } }),
  );
}
