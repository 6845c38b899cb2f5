import { createHash } from "node:crypto";
import Fastify, {
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import { notFound } from "./errors.js";
import { OPENAPI_PATH } from "./openapi.js";
import { ignoredQuery } from "./schemas.js";

// GET /v1/docs/: a browsable reference of GET /v1/openapi.json (Scalar's API reference). Everything the page loads
// comes from the gateway: the plugin serves Scalar's bundled script itself, the default web fonts (fetched from
// Scalar's servers) are switched off, and so are telemetry, the AI agent and MCP buttons. A Content-Security-Policy
// makes that a rule the browser enforces: scripts only from this origin plus the page's own inline start-up script
// (allowed by its hash, computed from the page as served), requests only to this origin.

export const API_REFERENCE_PREFIX = "/v1/docs";

const INLINE_SCRIPT = /<script(?![^>]*\bsrc=)[^>]*>([\s\S]*?)<\/script>/g;

/** The policy for one page: `script-src` lists the sha256 of each inline script the page carries. */
export function referencePagePolicy(html: string): string {
  const hashes = [...html.matchAll(INLINE_SCRIPT)].map(
    (m) =>
      `'sha256-${createHash("sha256")
        .update(m[1] ?? "", "utf8")
        .digest("base64")}'`,
  );
  return [
    "default-src 'none'",
    `script-src 'self' ${hashes.join(" ")}`.trim(),
    // Scalar injects its stylesheet and sets inline styles at run time.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

const REFERENCE_OPTIONS = {
  routePrefix: API_REFERENCE_PREFIX,
  logLevel: "warn",
  configuration: {
    url: OPENAPI_PATH,
    pageTitle: "wagate API reference",
    withDefaultFonts: false,
    telemetry: false,
    hideClientButton: false,
    showDeveloperTools: "never",
    agent: { disabled: true },
    mcp: { disabled: true },
    documentDownloadType: "json",
  },
} as const;

/**
 * The plugin is ~5 MB of script: loaded at start it would cost every gateway (and every test) a second or two and
 * ~36 MB of RSS for a page few open. So it runs in a Fastify instance of its own, built at the first visit, and the
 * gateway's routes under /v1/docs hand each request to it.
 */
export const apiReferenceRoutes: FastifyPluginAsync = async (app) => {
  let reference: Promise<FastifyInstance> | undefined;
  const load = () => {
    reference ??= (async () => {
      const { default: scalarApiReference } = await import("@scalar/fastify-api-reference");
      const inner = Fastify({ logger: false });
      await inner.register(scalarApiReference, REFERENCE_OPTIONS);
      await inner.ready();
      return inner;
    })();
    return reference;
  };
  app.addHook("onClose", async () => {
    if (reference) await (await reference).close();
  });

  let pagePolicy: string | undefined;
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const inner = await load();
    const answer = await inner.inject({
      method: "GET",
      url: request.url.split("?")[0] ?? API_REFERENCE_PREFIX,
    });
    if (answer.statusCode === 404) throw notFound("page");
    const type = String(answer.headers["content-type"] ?? "application/octet-stream");
    const location = answer.headers.location;
    if (typeof location === "string") reply.header("location", location);
    if (type.startsWith("text/html")) {
      pagePolicy ??= referencePagePolicy(answer.body);
      reply.header("content-security-policy", pagePolicy);
    } else {
      reply.header("content-security-policy", "default-src 'none'; frame-ancestors 'none'");
    }
    return reply.status(answer.statusCode).type(type).send(answer.rawPayload);
  };
  // Hidden from the OpenAPI document: the reference's own page and script, not the API.
  // The one family of /v1/ routes that accepts any query string: a page opened in a browser, by links that may carry
  // one (a tracker's ?utm_source=…), whose handler drops it before asking the reference's instance. Declared, not
  // forgotten: the test that every /v1/ route refuses unknown query parameters names these two as the exception.
  const schema = { hide: true, querystring: ignoredQuery };
  app.get(API_REFERENCE_PREFIX, { schema }, handler);
  app.get(`${API_REFERENCE_PREFIX}/*`, { schema }, handler);
};
