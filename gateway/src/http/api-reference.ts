import { createHash } from "node:crypto";
import scalarApiReference from "@scalar/fastify-api-reference";
import type { FastifyPluginAsync } from "fastify";
import { OPENAPI_PATH } from "./openapi.js";

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

export const apiReferenceRoutes: FastifyPluginAsync = async (app) => {
  // This plugin's context only: the reference's own routes.
  let policy: string | undefined;
  app.addHook("onSend", async (_request, reply, payload) => {
    const type = String(reply.getHeader("content-type") ?? "");
    if (type.startsWith("text/html") && typeof payload === "string") {
      policy ??= referencePagePolicy(payload);
      reply.header("content-security-policy", policy);
    } else {
      reply.header("content-security-policy", "default-src 'none'; frame-ancestors 'none'");
    }
    return payload;
  });
  await app.register(scalarApiReference, {
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
  });
};
