import type { SendOutcome } from "./transport.js";

// Meta's error codes decide what to do, not the HTTP status (statuses vary between sources). See WHATSAPP.md.

/** Codes worth retrying with backoff: throughput, app/account rate limits, generic or transient errors. */
const RETRYABLE_CODES = new Set([130429, 131056, 4, 80007, 131000, 1, 2, 131016, 133004]);

/** Meta's pair rate: the same recipient again only after about 6 s. */
const PAIR_RATE_DELAY_MS = 6_000;

export interface GraphErrorBody {
  error?: { code?: unknown; message?: unknown; error_data?: { details?: unknown } };
}

export function classifyGraphError(httpStatus: number, body: GraphErrorBody | undefined): SendOutcome {
  const code = typeof body?.error?.code === "number" ? body.error.code : undefined;
  const title =
    typeof body?.error?.message === "string" ? body.error.message.slice(0, 300) : `HTTP ${httpStatus}`;
  if (code !== undefined) {
    const label = String(code);
    if (code === 131056)
      return { kind: "retryable", code: label, message: title, minDelayMs: PAIR_RATE_DELAY_MS };
    if (RETRYABLE_CODES.has(code)) return { kind: "retryable", code: label, message: title };
    return { kind: "permanent", code: label, message: title };
  }
  if (httpStatus === 429 || httpStatus >= 500)
    return { kind: "retryable", code: `http_${httpStatus}`, message: title };
  return { kind: "permanent", code: `http_${httpStatus}`, message: title };
}

/** Errors raised before any byte of the request could have reached the provider. */
const NOT_SENT_CAUSES = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
  // The cloud transport's own connect timeout (cloud.ts): no connection, so no byte sent.
  "CONNECT_TIMEOUT",
]);

export function classifyNetworkError(error: unknown): SendOutcome {
  const cause = (error as { cause?: { code?: unknown } })?.cause;
  const code =
    typeof cause?.code === "string" ? cause.code : ((error as { name?: string })?.name ?? "network");
  if (NOT_SENT_CAUSES.has(code)) return { kind: "retryable", code: "network", message: code };
  return { kind: "in_doubt", code: "network", message: code };
}
