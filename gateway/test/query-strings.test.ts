import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SCOPES } from "../src/auth/index.js";
import { startTestGateway, type TestGateway } from "./support/gateway.js";
import { routesOfTree } from "./support/route-tree.js";

// Every /v1/ route refuses a query parameter it does not take with the gateway's own JSON 400 naming it, as it
// refuses an unknown body field, also when no edge in front of it checks anything (`npm run gateway` alone, the
// edge's identity off). The routes are read from Fastify's route tree, so a route added without a query schema
// fails here without anyone listing it.
//
// Fastify validates path parameters, then the body, then the query string: to reach the query's check, each
// request carries valid parameters (a UUID fits every id) and, where the route takes a body, a valid one from
// BODIES. Outside /v1/ the query strings are others' to define and stay as they are: Meta's verification handshake
// (GET /webhooks/whatsapp?hub.mode=…, read leniently: Meta may add parameters) and the operational probes.

const PROBE = "wagate_probe";

/** A body each body-taking route accepts (refused for its query string before any handler runs). */
const BODIES: Record<string, unknown> = {
  "POST /v1/admin/revocations": { jti: "probe" },
  "POST /v1/broadcasts": { text: { body: "hi" }, recipients: ["+14155550123"] },
  "POST /v1/messages": { type: "text", to: "+14155550123", text: { body: "hi" } },
  "POST /v1/numbers": { name: "probe", transport: "web" },
  "PATCH /v1/numbers/:id": { name: "probe" },
  "POST /v1/numbers/:id/link": { method: "qr" },
  "POST /v1/otp": { to: "+14155550123" },
  "POST /v1/otp/verify": { to: "+14155550123", code: "123456" },
  "POST /v1/replies": { match: "exact", pattern: "hi", reply: { type: "text", text: "hello" } },
  "PATCH /v1/replies/:id": { enabled: false },
  "POST /v1/webhooks": { url: "https://example.com/hook", events: ["message.status"] },
  "PATCH /v1/webhooks/:id": { events: ["message.status"] },
};

/**
 * The reference page (GET /v1/docs, /v1/docs/*) is the one exception: a page opened in a browser, by links that may
 * carry tracking parameters, whose handler drops the query string before it builds the page.
 */
const ACCEPTS_ANY_QUERY = (method: string, path: string) => method === "GET" && path.startsWith("/v1/docs");

let gw: TestGateway;
let token: string;
let routes: Array<{ method: string; path: string }>;

beforeAll(async () => {
  gw = await startTestGateway({ LOG_LEVEL: "warn" });
  token = await gw.token([...SCOPES]);
  routes = routesOfTree(gw.gateway.app.printRoutes({ commonPrefix: false })).filter(
    (r) => r.method !== "HEAD" && r.path.startsWith("/v1/"),
  );
});
afterAll(async () => {
  await gw?.stop();
});

/** The route's path with every parameter filled (a UUID is a valid id of every kind) and the wildcard a file. */
const concrete = (path: string) =>
  path.replace(/:[A-Za-z0-9_]+/g, () => randomUUID()).replace(/\/?\*$/, "/js/scalar.js");

describe("an unknown query parameter on a /v1/ route", () => {
  it("covers every route Fastify registered under /v1/, and a body for each route that takes one", () => {
    expect(routes.length).toBeGreaterThan(30);
    const names = routes.map((r) => `${r.method} ${r.path}`);
    expect(Object.keys(BODIES).filter((name) => !names.includes(name))).toEqual([]);
  });

  it("is a JSON 400 naming the parameter, on every route but the reference page", async () => {
    const answers: string[] = [];
    for (const { method, path } of routes.filter((r) => !ACCEPTS_ANY_QUERY(r.method, r.path))) {
      const body = BODIES[`${method} ${path}`];
      const answer = await gw.request(method, `${concrete(path)}?${PROBE}=1`, {
        token,
        ...(body === undefined ? {} : { body }),
      });
      answers.push(
        `${method} ${path} -> ${answer.status} ${answer.json?.error?.message ?? answer.text.slice(0, 80)}`,
      );
    }
    // One line per route, so a failure names every route that let the parameter through and what it answered.
    expect(answers.filter((a) => !a.endsWith(`-> 400 querystring: unknown field ${PROBE}`))).toEqual([]);
  });

  it("is refused in the same shape as an unknown body field", async () => {
    const send = (path: string, body: unknown) => gw.request("POST", path, { token, body });
    const byQuery = await send(`/v1/messages?${PROBE}=1`, BODIES["POST /v1/messages"]);
    const byBody = await send("/v1/messages", { ...(BODIES["POST /v1/messages"] as object), [PROBE]: 1 });
    expect(byQuery.json).toEqual({
      error: { code: "invalid_request", message: `querystring: unknown field ${PROBE}` },
    });
    expect(byBody.json).toEqual({
      error: { code: "invalid_request", message: `body: unknown field ${PROBE}` },
    });
    expect(byQuery.status).toBe(byBody.status);
  });

  it("is refused next to the parameters a route does take", async () => {
    const answer = await gw.request("GET", `/v1/messages?limit=5&${PROBE}=1`, { token });
    expect(answer.status).toBe(400);
    expect(answer.json.error.message).toBe(`querystring: unknown field ${PROBE}`);
    expect((await gw.request("GET", "/v1/messages?limit=5", { token })).status).toBe(200);
  });

  it("is ignored by the reference page, which reads no query string", async () => {
    const docs = routes.filter((r) => ACCEPTS_ANY_QUERY(r.method, r.path));
    // The wildcard as Fastify's tree prints it (the page's own files: /v1/docs/js/scalar.js).
    expect(docs.map((r) => r.path).sort()).toEqual(["/v1/docs", "/v1/docs*"]);
    for (const { path } of docs) {
      const answer = await gw.request("GET", `${concrete(path)}?utm_source=mail&${PROBE}=1`);
      expect(answer.status, path).toBeLessThan(400);
    }
  });
});
