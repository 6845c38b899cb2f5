import { posix } from "node:path";
import { z } from "zod";
import { EDGE_JS_FILE, IDENTITY_KEY_OBJECT, renderEdgeJs } from "./edge-js.js";
import type { EdgeLayout } from "./layout.js";
import { renderModsecurity } from "./modsecurity.js";
import { EDGE_ERRORS } from "./nginx-errors.js";

export { EDGE_ERRORS } from "./nginx-errors.js";

import { type RateLimit, rateLimitSchema, trustedCidrsSchema, type Waf, wafSchema } from "./settings.js";

// The whole nginx configuration of the edge, as files, from the validated stack config. Contracts:
//
// - `renderNginx({ domain, rateLimit, waf, layout })` → `{ "nginx.conf": ..., "<other files>": ... }`: every key
//   is a path relative to `layout.confDir`; write them all, then run
//   `nginx -p <layout.prefix> -c <layout.confDir>/nginx.conf`. The same call renders the VM's config
//   (`vmLayout()`), the local stack's and the tests' (`localLayout(root, ports)`). It is a *whole* nginx.conf:
//   it loads the ModSecurity module from `layout.modulesDir` itself and includes nothing from Debian's
//   sites-enabled or conf.d.
// - Running it (local stack, tests, benchmark): `scripts/lib/nginx.ts` —
//   `writeSelfSignedCertificate(layout, domain)` puts a throwaway certificate where certbot (`--cert-name wagate`,
//   see `CERT_NAME`) will put the real one (443 cannot listen without one); `startNginx({ layout, files })` writes
//   the files, runs `nginx -t`, starts nginx in the foreground under startProcess and waits for both ports; its
//   `reload(files?)` re-checks, sends SIGHUP and returns once new workers serve (e.g. after a renewal).
// - The error log is `<logDir>/error.log` (ModSecurity denials: "Access denied ... [id "949110"]"), the
//   ModSecurity audit log `<logDir>/modsec_audit.log` (JSON, one transaction per line, AUDIT_LOG_FILE).
// - The access log is `<logDir>/access.json`, one JSON object per line (ACCESS_LOG_FIELDS); `edge` says when the
//   edge itself refused the request ("waf", "rate", "conn", ...). fail2ban's filters match on it.
//
// Order of work for a request on 443 (why the locations look the way they do): nginx runs ModSecurity's phase 1
// in the rewrite phase, before limit_req. Each public route is therefore a prefix location that only applies
// limit_req/limit_conn and then hands over with `try_files` (which runs after the access phases) to a named
// location where ModSecurity is on and the request is proxied. A request refused with 429 never costs a WAF
// transaction, so a flood from one client does not eat the CPU other clients need.

const domainSchema = z
  .string()
  .regex(
    /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$/,
    "a lower-case DNS name",
  );

export interface NginxInput {
  readonly domain: string;
  readonly rateLimit: RateLimit;
  readonly waf: Waf;
  readonly layout: EdgeLayout;
  /** nginx `worker_processes`; "auto" (one per core) unless a caller needs otherwise. */
  readonly workerProcesses?: number | "auto";
  /**
   * `wagate:adminCidrs`: the only clients that may reach the routes that link a WhatsApp Web number
   * (`/v1/numbers/<id>/link`). Whoever links a number owns it, so these routes are not for the internet even with
   * an admin token; without any CIDR nobody reaches them through the edge.
   */
  readonly adminCidrs?: readonly string[];
  /**
   * The nginx version that will load the config (default: the VM's, Debian 13's 1.26). HTTP/2 is switched on with
   * `http2 on;` from 1.25.1 (1.26 warns about `listen ... http2`, which later versions drop); before that (Debian
   * 12's 1.22, a developer's host for `npm run local`) only the `listen` parameter exists.
   */
  readonly nginxVersion?: string;
  /** `wagate:trustedCidrs`: the operator's backends, exempt from the per-IP request limits (not per token). */
  readonly trustedCidrs?: readonly string[];
  /**
   * Identity first: the edge verifies the bearer token of every /v1/ request (infra/render/edge-js.ts) after the
   * per-IP limits; a missing or bad one gets the JSON 401 there, the per-token limit keys on the verified token
   * (its jti), and verified requests meet the WAF without CRS reading their body (modsecurity.ts). `keyFile`: the
   * JSON of renderIdentityKey, read by nginx's master at configuration load. Absent: no check at the edge.
   */
  readonly identity?: { readonly keyFile: string };
}

/**
 * Identity first: what the edge checks on a verified /v1/ request, which meets no ModSecurity (measured: merely
 * switching ModSecurity on costs more than the ratio target allows; README's edge section has the figures). The
 * rest of the positive model is the gateway's: strict zod schemas for path parameters and bodies (unknown fields
 * refused with 400) and its own token verification with revocation.
 */
export const VERIFIED_CHECKS = {
  token: "HS256 signature, exp/nbf, iss/aud, sub and jti (edge-js.ts): else 401",
  methods: "API_METHODS on /v1/, POST only on /v1/otp and /v1/broadcasts: else 405",
  path: "segments of letters, digits and _~+:@=-. not starting with a dot, as sent; no %-encoding but %2B %2F %3D (base64 ids): else 400",
  query:
    "none, except API_QUERY_ROUTES' parameters with plain values (letters, digits, _+- and %2B): else 400",
  headers:
    "no value starting with a bash function definition (shellshock's '() {'): else 400; control characters: nginx refuses NUL/CR/LF, the gateway's strict HTTP parser the rest; names: letters, digits, hyphens (ignore_invalid_headers)",
  sizes: "client_max_body_size per route (413), header buffers (431), URI length (414)",
  protocol:
    "nginx's own: Content-Length with Transfer-Encoding, duplicate Content-Length, a Transfer-Encoding other than chunked, control characters in the request line or header names, underscores in header names ignored: 400/501",
} as const;

/** The methods of the gateway's /v1/ routes (Fastify answers HEAD for each GET). */
export const API_METHODS = ["GET", "HEAD", "POST", "PATCH", "DELETE"] as const;

/**
 * The only verified routes that take query parameters (their zod querystring schemas): the path as a regex, the
 * parameter names; values are limited to letters, digits and hyphens (an enum, a number, a UUID).
 */
export const API_QUERY_ROUTES: readonly { readonly path: string; readonly params: readonly string[] }[] = [
  // GET /v1/webhooks/:id/deliveries (gateway/src/http/webhooks.ts, deliveriesQuery)
  { path: "/v1/webhooks/[A-Za-z0-9_-]+/deliveries", params: ["status", "limit", "before"] },
  // GET /v1/messages, GET /v1/conversations (gateway/src/http/inbox.ts, listMessagesQuery, listConversationsQuery)
  { path: "/v1/messages", params: ["direction", "contact", "number", "before", "limit"] },
  { path: "/v1/conversations", params: ["contact", "number", "before", "limit"] },
  // POST /v1/media (gateway/src/http/media.ts, uploadQuery)
  { path: "/v1/media", params: ["from"] },
  // GET /v1/templates (gateway/src/http/templates.ts, templatesQuery)
  { path: "/v1/templates", params: ["number"] },
];

/**
 * A /v1/ path as the API's routes spell it: segments of id characters, none starting with a dot. Meta's message
 * ids (POST /v1/messages/:id/read) are base64: `=`, and `+`, `/`, `=` percent-encoded (never a dot or a `%2E`).
 */
const API_PATH_CHAR = "(?:[A-Za-z0-9._~+:@=-]|%2[BbFf]|%3[Dd])";
const API_PATH = `/v1(?:/(?:[A-Za-z0-9_~+:@=-]|%2[BbFf]|%3[Dd])${API_PATH_CHAR}*)*/?`;

function apiQueryPattern(route: { path: string; params: readonly string[] }): string {
  // Values: an enum, a number, an id, an opaque base64url cursor, an E.164 number (`+` as sent, or `%2B`).
  const param = `(?:${route.params.join("|")})=(?:[A-Za-z0-9_+-]|%2[Bb])*`;
  return `^${route.path}\\?${param}(?:&${param})*$`;
}

/** The nginx the VM runs (Debian 13 "trixie"). */
export const VM_NGINX_VERSION = "1.26.3";

/** The edge's answer to a verified request whose path or query the positive model refuses (smoke tells it apart). */
export const URI_REFUSED_MESSAGE =
  "path or query: characters, dot segments or query parameters this route does not take";

/** Whether `http2 on;` exists in this nginx version (1.25.1 and later). */
export function hasHttp2Directive(version: string): boolean {
  const [major = 0, minor = 0, patch = 0] = version.split(".").map(Number);
  return major > 1 || (major === 1 && (minor > 25 || (minor === 25 && patch >= 1)));
}

const cidrSchema = z.string().regex(/^[0-9a-fA-F:.]+\/[0-9]{1,3}$/, "a CIDR block such as 203.0.113.0/24");

/** The link routes' location: a regex location, so it wins over the `/v1/` prefix. */
export const LINK_ROUTE_MATCH = "~ ^/v1/numbers/[^/]+/link$";

/** The access log, relative to layout.logDir. */
export const ACCESS_LOG_FILE = "access.json";
export const ERROR_LOG_FILE = "error.log";

/**
 * The access log's fields, in the order they are written (one JSON object per line, nginx `escape=json`).
 * The query string is never logged (Meta's handshake carries its verify token there); neither are headers other
 * than the User-Agent.
 */
export const ACCESS_LOG_FIELDS = {
  time: "ISO 8601 local time the request ended",
  remote_addr: "client IP (the TCP peer: nothing in front of nginx on the VM)",
  edge: 'why the edge itself answered: "waf" (403 by ModSecurity), "rate" (429 by limit_req), "conn" (429 by limit_conn), "size" (413), "auth" (401), "invalid" (400, 405, 414, 431), "" when the request reached the gateway or a plain 404',
  status: "HTTP status sent (number)",
  request: 'method, path without query, protocol: "POST /v1/messages HTTP/2.0"',
  request_id:
    "nginx $request_id, also sent to the gateway as X-Request-Id and used as ModSecurity's unique_id",
  request_time: "seconds, with milliseconds (number)",
  request_length: "bytes received, headers included (number)",
  body_bytes_sent: "bytes of the response body (number)",
  upstream_status: 'the gateway\'s status, "" when the edge answered itself',
  upstream_response_time: 'seconds, "" when the edge answered itself',
  user_agent: "User-Agent header",
  tls: "TLS protocol version",
} as const;

/** Security headers of every answer on 443 (OWASP Secure Headers for an API that only serves JSON). */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Strict-Transport-Security": "max-age=63072000",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
  "Cross-Origin-Resource-Policy": "same-origin",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Permissions-Policy": "accelerometer=(), camera=(), geolocation=(), microphone=(), payment=(), usb=()",
  "X-Permitted-Cross-Domain-Policies": "none",
};

/** Per-route body limits (nginx's client_max_body_size); ModSecurity's are the largest of these. */
export const BODY_LIMITS = {
  /** Messages, OTP, replies, webhook subscriptions: a WhatsApp text is at most 4,096 characters. */
  api: "128k",
  otp: "16k",
  /** 100,000 recipients, with per-recipient template parameters. */
  broadcasts: "16m",
  /** Meta delivers at most 3 MB per webhook call. */
  whatsappWebhook: "4m",
  /** POST /v1/media: a document's cap (100 MB); the gateway enforces each kind's own cap while streaming. */
  media: "100m",
} as const;

// RFC 7919 ffdhe2048, the group Mozilla's intermediate profile pins for its DHE suites.
const FFDHE2048 = `-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
`;

// Mozilla Server Side TLS, "intermediate" (v5.7): TLS 1.2 and 1.3, forward-secret AEAD suites only.
const INTERMEDIATE_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
  "DHE-RSA-AES128-GCM-SHA256",
  "DHE-RSA-AES256-GCM-SHA384",
  "DHE-RSA-CHACHA20-POLY1305",
].join(":");

function listen(layout: EdgeLayout, port: number, extra: string): string[] {
  if (layout.listenHost) return [`listen ${layout.listenHost}:${port}${extra};`];
  return [`listen ${port}${extra};`, `listen [::]:${port}${extra};`];
}

function indent(lines: string[], depth: number): string {
  const pad = "    ".repeat(depth);
  return lines.map((l) => (l === "" ? "" : pad + l)).join("\n");
}

function jsonString(value: string): string {
  // nginx single-quoted string: JSON never contains a single quote here, but refuse one rather than escape it.
  if (value.includes("'")) throw new Error("edge error bodies must not contain a single quote");
  return value;
}

/** The internal locations that answer the edge's errors. */
const ERROR_PAGE_PREFIX = "/.wagate-error/";

/** The gateway's error shape with nginx's request id, as an nginx single-quoted string's contents. */
function errorBody(code: string, message: string): string {
  return `{"error":{"code":"${code}","message":"${jsonString(message)}","request_id":"$request_id"}}\\n`;
}

function limitReq(zone: string, burst: number): string {
  // nginx refuses `burst=0`; without the parameter the burst is 0 (stack config allows 0).
  return burst > 0 ? `limit_req zone=${zone} burst=${burst} nodelay;` : `limit_req zone=${zone};`;
}

interface Route {
  /** nginx location match, e.g. `= /v1/broadcasts` or `/v1/`. */
  readonly match: string;
  /** Name of the named location that runs the WAF and proxies. */
  readonly name: string;
  readonly limits: string[];
  readonly bodyLimit: string;
  readonly bodyBuffer: string;
  /** /v1/: the bearer token is verified at the edge (when input.identity is set). */
  readonly verified?: boolean;
  /**
   * Binary uploads (POST /v1/media): the body streams to the gateway as it arrives (no request buffering), and
   * once the edge verified the token, ModSecurity is off (CRS has nothing to read in a JPEG; the gateway sniffs the
   * bytes and enforces the caps). Without the edge's token check the WAF stays on.
   */
  readonly streamed?: boolean;
  /**
   * The gateway's own Content-Security-Policy is kept instead of the edge's `default-src 'none'` (the API reference
   * page runs the gateway's script under the policy the gateway computes for it; API_DOCS_CSP_FALLBACK otherwise).
   */
  readonly gatewayCsp?: boolean;
  /** Verified routes whose every endpoint is a POST (others: API_METHODS). */
  readonly postOnly?: boolean;
}

/** The public API description (gateway/src/http/openapi.ts, api-reference.ts): no token, anonymous WAF. */
export const API_DOCUMENT_PATH = "/v1/openapi.json";
export const API_REFERENCE_PREFIX = "/v1/docs";

export function renderNginx(input: NginxInput): Record<string, string> {
  const domain = domainSchema.parse(input.domain);
  const rateLimit = rateLimitSchema.parse(input.rateLimit);
  const waf = wafSchema.parse(input.waf);
  const trustedCidrs = trustedCidrsSchema.parse(input.trustedCidrs ?? []);
  const { layout } = input;
  const adminCidrs = z.array(cidrSchema).parse(input.adminCidrs ?? []);
  const version = input.nginxVersion ?? VM_NGINX_VERSION;
  if (!/^\d+\.\d+(\.\d+)?$/.test(version))
    throw new Error(`nginxVersion must look like 1.26.3, not ${version}`);
  const http2Directive = hasHttp2Directive(version);
  const files: Record<string, string> = {};
  const { identity } = input;
  let rulesFile: string | undefined;
  if (waf.enabled) {
    const modsecurity = renderModsecurity(waf, layout, { verified: identity !== undefined });
    Object.assign(files, modsecurity.files);
    rulesFile = modsecurity.rulesFile;
  }
  files[EDGE_JS_FILE] = renderEdgeJs();
  const dhparam = posix.join(layout.confDir, "ffdhe2048.pem");
  files[posix.relative(layout.confDir, dhparam)] = FFDHE2048;

  const tmp = (name: string) => posix.join(layout.tempDir, name);
  const log = (name: string) => posix.join(layout.logDir, name);
  const { perIp, otpPerMinute, perToken, webhookPerIp, connectionsPerIp } = rateLimit;
  const ipLimit = limitReq("wagate_ip", perIp.burst);
  const tokenLimit = limitReq("wagate_token", perToken.burst);

  const routes: Route[] = [
    {
      match: "/v1/",
      name: "@wagate_api",
      verified: true,
      limits: [ipLimit, tokenLimit],
      bodyLimit: BODY_LIMITS.api,
      bodyBuffer: BODY_LIMITS.api,
    },
    {
      match: "/v1/otp",
      name: "@wagate_otp",
      verified: true,
      postOnly: true,
      limits: [limitReq("wagate_otp", otpPerMinute.burst), ipLimit, tokenLimit],
      bodyLimit: BODY_LIMITS.otp,
      bodyBuffer: BODY_LIMITS.otp,
    },
    {
      match: "= /v1/broadcasts",
      name: "@wagate_broadcasts",
      verified: true,
      postOnly: true,
      limits: [ipLimit, tokenLimit],
      bodyLimit: BODY_LIMITS.broadcasts,
      bodyBuffer: "2m",
    },
    {
      match: "= /v1/media",
      name: "@wagate_media",
      verified: true,
      streamed: true,
      limits: [ipLimit, tokenLimit],
      bodyLimit: BODY_LIMITS.media,
      bodyBuffer: BODY_LIMITS.api,
    },
    {
      match: `= ${API_DOCUMENT_PATH}`,
      name: "@wagate_api_document",
      limits: [ipLimit],
      bodyLimit: "1k",
      bodyBuffer: "1k",
    },
    {
      match: `^~ ${API_REFERENCE_PREFIX}`,
      name: "@wagate_api_reference",
      limits: [ipLimit],
      bodyLimit: "1k",
      bodyBuffer: "1k",
      gatewayCsp: true,
    },
    {
      match: "= /webhooks/whatsapp",
      name: "@wagate_whatsapp_webhook",
      limits: [limitReq("wagate_webhook", webhookPerIp.burst)],
      bodyLimit: BODY_LIMITS.whatsappWebhook,
      bodyBuffer: BODY_LIMITS.whatsappWebhook,
    },
    {
      match: "= /healthz",
      name: "@wagate_health",
      limits: [ipLimit],
      bodyLimit: "1k",
      bodyBuffer: "1k",
    },
  ];

  // Link routes: refused at the edge (403, JSON) unless the client is in wagate:adminCidrs; then the API's limits,
  // WAF and upstream like any other API route.
  const linkRoute = [
    `location ${LINK_ROUTE_MATCH} {`,
    "    if ($wagate_admin_client = 0) {",
    "        set $wagate_denial admin;",
    `        return 403 '${errorBody("forbidden", "Linking is only allowed from the admin networks")}';`,
    "    }",
    `    ${ipLimit}`,
    `    ${tokenLimit}`,
    `    client_max_body_size ${BODY_LIMITS.api};`,
    `    client_body_buffer_size ${BODY_LIMITS.api};`,
    `    try_files /.wagate-edge-handover ${identity !== undefined ? "@wagate_api_identity" : "@wagate_api"};`,
    "}",
    "",
  ];
  const adminGeo = [
    "# Who may reach the link routes (wagate:adminCidrs).",
    "geo $wagate_admin_client {",
    "    default 0;",
    ...adminCidrs.map((cidr) => `    ${cidr} 1;`),
    "}",
  ];

  const securityHeaders = Object.entries(SECURITY_HEADERS).map(([name, value]) => {
    if (value.includes('"')) throw new Error(`header ${name} must not contain a double quote`);
    return `add_header ${name} "${value}" always;`;
  });
  const notFound = errorBody("not_found", "Not found");
  // `=<status>` where the answer's status differs: nginx answers its internal codes (494, 497) with 400 otherwise.
  const errorPageDirectives = Object.entries(EDGE_ERRORS).map(
    ([s, e]) => `error_page ${s}${e.as ? ` =${e.as}` : ""} ${ERROR_PAGE_PREFIX}${s};`,
  );
  const wafErrorPageDirectives = errorPageDirectives.filter((l) => !l.startsWith("error_page 403 "));
  const wafLines = waf.enabled
    ? [
        "    modsecurity on;",
        "    # A ModSecurity 403 becomes JSON in place (infra/render/edge-js.ts says why not error_page).",
        ...wafErrorPageDirectives.map((l) => `    ${l}`),
        "    js_header_filter wagate.wafErrorHeaders;",
        "    js_body_filter wagate.wafErrorBody buffer_type=buffer;",
      ]
    : [];
  const uriRefused = errorBody("invalid_request", URI_REFUSED_MESSAGE);
  const headersRefused = errorBody("invalid_request", "headers: a value that is a function definition");
  const routeBlocks = routes.flatMap((r) => {
    const checked = identity !== undefined && r.verified === true;
    // Binary uploads stream to the gateway as they arrive.
    const streamedLines = r.streamed ? ["    proxy_request_buffering off;"] : [];
    return [
      `location ${r.match} {`,
      ...r.limits.map((l) => `    ${l}`),
      `    client_max_body_size ${r.bodyLimit};`,
      `    client_body_buffer_size ${r.bodyBuffer};`,
      "    # try_files runs after limit_req: the hand-over that keeps refused requests away from the WAF.",
      `    try_files /.wagate-edge-handover ${checked ? `${r.name}_identity` : r.name};`,
      "}",
      ...(checked
        ? [
            // The per-token limit above only counted verified tokens ($wagate_identity is "" otherwise). A verified
            // request meets no ModSecurity: the positive model (methods and query parameters here, the gateway's
            // strict schemas behind) judges it; see VERIFIED_CHECKS.
            `location ${r.name}_identity {`,
            `    client_max_body_size ${r.bodyLimit};`,
            `    client_body_buffer_size ${r.bodyBuffer};`,
            ...streamedLines,
            '    if ($wagate_identity = "") {',
            "        return 401;",
            "    }",
            ...(r.postOnly
              ? ["    if ($request_method != POST) {", "        return 405;", "    }"]
              : ["    if ($wagate_api_method = 0) {", "        return 405;", "    }"]),
            "    if ($wagate_api_uri = 0) {",
            "        set $wagate_denial invalid;",
            `        return 400 '${uriRefused}';`,
            "    }",
            "    if ($wagate_headers_ok = 0) {",
            "        set $wagate_denial invalid;",
            `        return 400 '${headersRefused}';`,
            "    }",
            "    proxy_pass http://wagate_gateway;",
            "}",
          ]
        : [
            `location ${r.name} {`,
            `    client_max_body_size ${r.bodyLimit};`,
            `    client_body_buffer_size ${r.bodyBuffer};`,
            ...streamedLines,
            // A location with add_header inherits none of the server's: all of them again, the policy from the gateway.
            ...(r.gatewayCsp
              ? [
                  ...securityHeaders
                    .filter((l) => !l.startsWith("add_header Content-Security-Policy "))
                    .map((l) => `    ${l}`),
                  "    add_header Content-Security-Policy $wagate_gateway_csp always;",
                  "    add_header X-Request-Id $request_id always;",
                  "    add_header Retry-After $wagate_retry_after always;",
                ]
              : []),
            ...wafLines,
            "    proxy_pass http://wagate_gateway;",
            "}",
          ]),
      "",
    ];
  });

  // Internal URI locations, not named ones: nginx cannot redirect a request whose URI it could not read (414, a
  // bad request line) to a named location.
  const errorPages = Object.entries(EDGE_ERRORS).flatMap(([status, e]) => [
    `location = ${ERROR_PAGE_PREFIX}${status} {`,
    "    internal;",
    ...(e.edge ? [`    set $wagate_denial ${status === "429" ? "$wagate_limit_kind" : e.edge};`] : []),
    `    return ${e.as ?? status} '${errorBody(e.code, e.message)}';`,
    "}",
  ]);

  const hiddenUpstreamHeaders = [
    ...Object.keys(SECURITY_HEADERS),
    "X-Powered-By",
    "Server",
    "X-Request-Id",
  ].map((h) => `proxy_hide_header ${h};`);

  const portSuffix = layout.httpsPort === 443 ? "" : `:${layout.httpsPort}`;
  const logFormat = [
    "'{'",
    `'"time":"$time_iso8601",'`,
    `'"remote_addr":"$remote_addr",'`,
    `'"edge":"$wagate_edge",'`,
    `'"status":$status,'`,
    `'"request":"$request_method $uri $server_protocol",'`,
    `'"request_id":"$request_id",'`,
    `'"request_time":$request_time,'`,
    `'"request_length":$request_length,'`,
    `'"body_bytes_sent":$body_bytes_sent,'`,
    `'"upstream_status":"$upstream_status",'`,
    `'"upstream_response_time":"$upstream_response_time",'`,
    `'"user_agent":"$http_user_agent",'`,
    `'"tls":"$ssl_protocol"'`,
    "'}'",
  ];

  const conf = `# Rendered by wagate (infra/render/nginx.ts) for ${domain}. Do not edit on the host: re-render.
load_module ${posix.join(layout.modulesDir, "ngx_http_js_module.so")};
${waf.enabled ? `load_module ${posix.join(layout.modulesDir, "ngx_http_modsecurity_module.so")};\n` : ""}${layout.user ? `user ${layout.user};\n` : ""}worker_processes ${input.workerProcesses ?? "auto"};
worker_rlimit_nofile 16384;
pid ${layout.pidFile};
error_log ${log(ERROR_LOG_FILE)} warn;

events {
    worker_connections 4096;
}

http {
    server_tokens off;
    default_type application/json;
    charset_types application/json;
    sendfile off;
    tcp_nodelay on;

    # Slow or oversized clients are cut off rather than held.
    client_header_timeout 10s;
    client_body_timeout 15s;
    send_timeout 30s;
    keepalive_timeout 30s;
    keepalive_requests 1000;
    reset_timedout_connection on;
    client_header_buffer_size 2k;
    large_client_header_buffers 4 16k;
    client_max_body_size ${BODY_LIMITS.api};
    client_body_buffer_size ${BODY_LIMITS.api};

    client_body_temp_path ${tmp("body")};
    proxy_temp_path ${tmp("proxy")};
    fastcgi_temp_path ${tmp("fastcgi")};
    uwsgi_temp_path ${tmp("uwsgi")};
    scgi_temp_path ${tmp("scgi")};

    # One JSON object per line; fields and meaning: ACCESS_LOG_FIELDS in infra/render/nginx.ts. No query
    # string (Meta's verify token travels there), no Authorization header.
    log_format wagate_json escape=json
${indent(logFormat, 2)};
    access_log ${log(ACCESS_LOG_FILE)} wagate_json;

    # The edge's njs module (infra/render/edge-js.ts).
    js_import wagate from ${posix.join(layout.confDir, EDGE_JS_FILE)};

    # --- Rate limits (numbers from stack config wagate:rateLimit) -----------------------------------------------
    # The operator's backends (wagate:trustedCidrs) send for many users from one address: an empty key leaves them
    # out of the per-IP request zones. Their tokens are still limited, and limit_conn still counts them.
    geo $wagate_trusted {
        default 0;
${indent(
  trustedCidrs.map((c) => `${c} 1;`),
  2,
)}
    }
    map $wagate_trusted $wagate_ip_key {
        1 "";
        default $binary_remote_addr;
    }
    limit_req_zone $wagate_ip_key zone=wagate_ip:10m rate=${perIp.rate}r/s;
    limit_req_zone $wagate_ip_key zone=wagate_otp:10m rate=${otpPerMinute.rate}r/m;
    limit_req_zone $binary_remote_addr zone=wagate_webhook:1m rate=${webhookPerIp.rate}r/s;
    # Per bearer token: the key is the first 22 characters of the JWT's signature (132 bits of an HMAC), never the
    # token itself, so the shared zone holds neither a usable credential nor the claims, and each key is short.
    # Requests without a bearer token have an empty key and are not counted here (the per-IP zone still is).
${
  identity
    ? `    # With the edge's token check: the verified token's jti ("" for a missing or bad token: not counted here,
    # answered 401 next). The key file is read by the master at configuration load.
    js_preload_object ${IDENTITY_KEY_OBJECT} from ${identity.keyFile};
    js_set $wagate_identity wagate.identity;
    limit_req_zone $wagate_identity zone=wagate_token:10m rate=${perToken.rate}r/s;
    # The positive model of verified requests (VERIFIED_CHECKS): the API's methods; path segments of the characters
    # the API's ids use, none starting with a dot; query parameters only where a route's schema takes them. Matched
    # on the request line as sent (what the gateway receives), so no encoding or dot segment slips past.
    js_set $wagate_headers_ok wagate.headersOk;
    map $request_method $wagate_api_method {
${indent(
  API_METHODS.map((m) => `${m} 1;`),
  2,
)}
        default 0;
    }
    map $request_uri $wagate_api_uri {
        "~^${API_PATH}\\??$" 1;
${indent(
  API_QUERY_ROUTES.map((q) => `"~${apiQueryPattern(q)}" 1;`),
  2,
)}
        default 0;
    }`
    : `    map $http_authorization $wagate_token_key {
        "~^Bearer [A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.(?<wagate_token_sig>[A-Za-z0-9_-]{22})" $wagate_token_sig;
        default "";
    }
    limit_req_zone $wagate_token_key zone=wagate_token:10m rate=${perToken.rate}r/s;`
}
    limit_conn_zone $binary_remote_addr zone=wagate_conn:10m;
${indent(adminGeo, 1)}
    limit_req_status 429;
    limit_conn_status 429;
    limit_req_log_level warn;
    limit_conn_log_level warn;
    map $limit_conn_status $wagate_limit_kind {
        REJECTED conn;
        default rate;
    }
    # The access log's "edge" field: what the error pages recorded, or "waf" for a 403 no upstream answered.
    map "$wagate_denial:$status:$upstream_status" $wagate_edge {
        "~^(?<wagate_denial_kind>[a-z]+):" $wagate_denial_kind;
        "~^:403:$" waf;
        default "";
    }
    # The API reference page keeps the policy the gateway sends for it; anything else there gets the edge's.
    map $upstream_http_content_security_policy $wagate_gateway_csp {
        "" "${SECURITY_HEADERS["Content-Security-Policy"]}";
        default $upstream_http_content_security_policy;
    }
    map $wagate_denial $wagate_retry_after {
        rate 1;
        conn 1;
        default "";
    }

    # --- TLS: Mozilla "intermediate"; no OCSP stapling (Let's Encrypt ended OCSP) ------------------------------
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ${INTERMEDIATE_CIPHERS};
    ssl_prefer_server_ciphers off;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_dhparam ${dhparam};
    ssl_session_timeout 1d;
    ssl_session_cache shared:wagate_tls:10m;
    ssl_session_tickets off;
${
  rulesFile
    ? `
    # --- WAF: ModSecurity v3 + OWASP CRS, rules loaded once here; switched on per location (see below) ---------
    modsecurity off;
    modsecurity_rules_file ${rulesFile};
    modsecurity_transaction_id "$request_id";
`
    : ""
}
    # --- The gateway, on loopback ------------------------------------------------------------------------------
    upstream wagate_gateway {
        server ${layout.upstream.host}:${layout.upstream.port} max_fails=0;
        keepalive 64;
        # Below Node's own 5 s keep-alive timeout, so nginx never reuses a connection the gateway is closing
        # (a POST on such a connection would answer 502: nginx does not retry non-idempotent requests).
        keepalive_timeout 4s;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host ${domain};
    # nginx is the first hop: the client's own X-Forwarded-For is replaced, not trusted.
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_set_header X-Real-IP $remote_addr;
    proxy_set_header X-Forwarded-Proto https;
    proxy_set_header X-Request-Id $request_id;
    proxy_connect_timeout 5s;
    proxy_send_timeout 60s;
    proxy_read_timeout 60s;
    proxy_request_buffering on;
${indent(hiddenUpstreamHeaders, 1)}

    # --- Port ${layout.httpPort}: the ACME HTTP-01 challenge, and a redirect for everything else ------------------------
    server {
${indent(listen(layout, layout.httpPort, " default_server"), 2)}
        server_name _;
        set $wagate_denial "";
        add_header X-Request-Id $request_id always;
${indent(errorPageDirectives, 2)}
        location ^~ /.well-known/acme-challenge/ {
            root ${layout.acmeWebroot};
            default_type text/plain;
            try_files $uri =404;
        }
        location / {
            return 301 https://${domain}${portSuffix}$request_uri;
        }
${indent(errorPages, 2)}
    }

    # --- Port ${layout.httpsPort}: the API ----------------------------------------------------------------------------
    server {
${indent(listen(layout, layout.httpsPort, http2Directive ? " ssl default_server" : " ssl http2 default_server"), 2)}
${http2Directive ? "        http2 on;\n" : ""}        server_name ${domain};
        ssl_certificate ${layout.certificate};
        ssl_certificate_key ${layout.certificateKey};
        root ${posix.join(layout.tempDir, "empty")};

${indent(securityHeaders, 2)}
        add_header X-Request-Id $request_id always;
        add_header Retry-After $wagate_retry_after always;

        set $wagate_denial "";
        limit_conn wagate_conn ${connectionsPerIp};
${indent(errorPageDirectives, 2)}

        # Not for the internet: Prometheus scrapes and readiness probes use the gateway's loopback port.
        location = /metrics {
            return 404 '${notFound}';
        }
        location = /readyz {
            return 404 '${notFound}';
        }
        # Anything outside the API's paths is answered here, without a WAF transaction or a gateway round trip.
        location / {
            return 404 '${notFound}';
        }

${indent(linkRoute, 2)}
${indent(routeBlocks, 2)}
${indent(errorPages, 2)}
    }
}
`;
  files["nginx.conf"] = conf;
  return files;
}
