// The answers the edge makes itself (see EDGE_ERRORS). Shared by nginx.ts and edge-js.ts.

/**
 * Every status nginx produces itself, answered in the gateway's error shape (`{"error":{"code","message"}}`, plus
 * the request id that finds the request in the access and audit logs), over HTTP/1.1 and HTTP/2. `edge` is what
 * the access log's "edge" field records. `as` answers with another status: nginx's internal 494 ("request
 * header too large", sent as 400 by default) is the standard 431, and 497 (plain HTTP to the TLS port) a 400.
 * A WAF 403 names no rule: the request id finds the rules in the audit log. 408 is configured for completeness:
 * nginx closes a connection that timed out without answering.
 */
export const EDGE_ERRORS: Readonly<
  Record<number, { code: string; message: string; edge: string; as?: number }>
> = {
  400: { code: "bad_request", message: "The request could not be read", edge: "invalid" },
  401: { code: "unauthorized", message: "missing or invalid credentials", edge: "auth" },
  403: { code: "forbidden", message: "The request was refused by the edge", edge: "waf" },
  404: { code: "not_found", message: "Not found", edge: "" },
  405: { code: "method_not_allowed", message: "Method not allowed", edge: "invalid" },
  408: { code: "request_timeout", message: "The request took too long to arrive", edge: "" },
  413: { code: "payload_too_large", message: "The request body is too large for this route", edge: "size" },
  414: { code: "uri_too_long", message: "The URI is too long", edge: "invalid" },
  429: { code: "rate_limited", message: "Too many requests; slow down and retry later", edge: "rate" },
  431: { code: "headers_too_large", message: "The request headers are too large", edge: "invalid" },
  494: { code: "headers_too_large", message: "The request headers are too large", edge: "invalid", as: 431 },
  497: { code: "bad_request", message: "Plain HTTP was sent to the HTTPS port", edge: "invalid", as: 400 },
  500: { code: "internal", message: "Internal error at the edge", edge: "" },
  // nginx's answer to a Transfer-Encoding other than "chunked" (a smuggling attempt or an exotic client).
  501: { code: "not_implemented", message: "This Transfer-Encoding is not supported", edge: "invalid" },
  502: { code: "unavailable", message: "The gateway is not answering", edge: "" },
  503: { code: "unavailable", message: "The gateway is not available", edge: "" },
  504: { code: "timeout", message: "The gateway did not answer in time", edge: "" },
};
