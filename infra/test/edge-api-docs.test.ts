import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SECURITY_HEADERS } from "../render/nginx.js";
import { OPEN_LIMITS, startTestEdge, type TestEdge } from "./fixtures/edge.js";

// The API's description through the real edge (identity first on): GET /v1/openapi.json and the reference page
// under /v1/docs reach the gateway without a token, as anonymous traffic (full CRS), while every other /v1 route
// still needs one; the reference page keeps the Content-Security-Policy the gateway computed for it and every other
// security header of the edge.

const KEY = {
  secret: "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
  issuer: "wagate",
  audience: "wagate",
  toleranceSeconds: 30,
};
const PAGE_POLICY = "default-src 'none'; script-src 'self' 'sha256-abc='; connect-src 'self'";

let edge: TestEdge;

beforeAll(async () => {
  edge = await startTestEdge({ rateLimit: OPEN_LIMITS, identity: KEY });
}, 60_000);
afterAll(async () => {
  await edge?.close();
});

describe("the API's description at the edge", () => {
  it("serves /v1/openapi.json and /v1/docs without a token; other /v1 routes still answer 401", async () => {
    for (const path of ["/v1/openapi.json", "/v1/docs", "/v1/docs/", "/v1/docs/js/scalar.js"]) {
      const before = edge.upstream.received.length;
      const res = await edge.send({ path });
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
      expect(edge.upstream.received.at(before)?.url).toBe(path);
    }
    for (const path of ["/v1/templates", "/v1/openapi.jsonx", "/v1/openapi.json/x", "/v1/messages"]) {
      const res = await edge.send({ path });
      expect({ path, status: res.status }).toEqual({ path, status: 401 });
    }
  });

  it("keeps the gateway's policy on the reference page, with the edge's other security headers", async () => {
    const page = await edge.send({ path: "/v1/docs/", headers: { "x-test-response-csp": PAGE_POLICY } });
    expect(page.status).toBe(200);
    expect(page.headers["content-security-policy"]).toBe(PAGE_POLICY);
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) {
      if (name === "Content-Security-Policy") continue;
      expect({ name, value: page.headers[name.toLowerCase()] }).toEqual({ name, value });
    }
    expect(page.headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
    expect(page.headers["x-powered-by"]).toBeUndefined();
    // Without a policy from the gateway, the edge's own; the document itself always gets the edge's.
    const bare = await edge.send({ path: "/v1/docs/js/scalar.js" });
    expect(bare.headers["content-security-policy"]).toBe(SECURITY_HEADERS["Content-Security-Policy"]);
    const doc = await edge.send({
      path: "/v1/openapi.json",
      headers: { "x-test-response-csp": PAGE_POLICY },
    });
    expect(doc.headers["content-security-policy"]).toBe(SECURITY_HEADERS["Content-Security-Policy"]);
  });

  it("meets the full CRS like other anonymous traffic", async () => {
    const before = edge.upstream.received.length;
    for (const path of [
      "/v1/openapi.json?id=1%27%20OR%20%271%27%3D%271",
      "/v1/docs/?q=%3Cscript%3Ealert(1)%3C/script%3E",
    ]) {
      const res = await edge.send({ path });
      expect({ path, status: res.status }).toEqual({ path, status: 403 });
      expect(JSON.parse(res.body).error.code).toBe("forbidden");
    }
    expect(edge.upstream.received.length).toBe(before);
  });
});
