import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { localLayout } from "../render/layout.js";
import { renderNginx } from "../render/nginx.js";
import { rateLimitSchema, wafSchema } from "../render/settings.js";
import { OPEN_LIMITS, startTestEdge, type TestEdge } from "./fixtures/edge.js";

// The routes that link a WhatsApp Web number (POST /v1/numbers/<id>/link) are served only to wagate:adminCidrs:
// whoever links a number owns it. Run for real: nginx with the WAF, clients on different loopback addresses.

let edge: TestEdge;

beforeAll(async () => {
  edge = await startTestEdge({ rateLimit: OPEN_LIMITS, adminCidrs: ["127.0.0.2/32"] });
});
afterAll(async () => {
  await edge?.close();
});

const link = (from: string, path = "/v1/numbers/0190a0b0-0000-7000-8000-000000000001/link") =>
  edge.send({
    method: "POST",
    path,
    from,
    headers: { "content-type": "application/json", authorization: "Bearer a.b.c" },
    body: '{"method":"qr"}',
  });

describe("link routes at the edge", () => {
  it("refuses a client outside wagate:adminCidrs with a JSON 403 before the gateway sees it", async () => {
    const before = edge.upstream.received.length;
    const refused = await link("127.0.0.3");
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toEqual({
      error: {
        code: "forbidden",
        message: "Linking is only allowed from the admin networks",
        request_id: refused.headers["x-request-id"],
      },
    });
    expect(edge.upstream.received.length).toBe(before);
    expect(await edge.accessEntry(refused.headers["x-request-id"])).toMatchObject({
      status: 403,
      edge: "admin",
    });
  });

  it("passes a client inside wagate:adminCidrs to the gateway", async () => {
    const before = edge.upstream.received.length;
    const passed = await link("127.0.0.2");
    expect(passed.status).toBe(200);
    expect(edge.upstream.received.slice(before).map((r) => r.url)).toEqual([
      "/v1/numbers/0190a0b0-0000-7000-8000-000000000001/link",
    ]);
  });

  it("leaves the rest of the numbers API to every client (the gateway checks the admin scope)", async () => {
    const before = edge.upstream.received.length;
    const listed = await edge.send({
      path: "/v1/numbers",
      from: "127.0.0.3",
      headers: { authorization: "Bearer a.b.c" },
    });
    expect(listed.status).toBe(200);
    expect(edge.upstream.received.length).toBe(before + 1);
  });
});

describe("rendering", () => {
  const render = (adminCidrs?: string[]) =>
    renderNginx({
      domain: "gateway.test",
      rateLimit: rateLimitSchema.parse({}),
      waf: wafSchema.parse({ enabled: false }),
      layout: localLayout("/tmp/x", { http: 8080, https: 8443, upstream: 3000 }),
      ...(adminCidrs ? { adminCidrs } : {}),
    })["nginx.conf"] as string;

  it("lists each admin CIDR and nobody else; without any, the link routes are closed to all", () => {
    expect(render(["203.0.113.0/24", "2001:db8::/32"])).toMatch(
      /geo \$wagate_admin_client \{\n\s+default 0;\n\s+203\.0\.113\.0\/24 1;\n\s+2001:db8::\/32 1;\n\s+\}/,
    );
    expect(render()).toMatch(/geo \$wagate_admin_client \{\n\s+default 0;\n\s+\}/);
  });

  it("refuses a CIDR that is not one (it would break the geo block)", () => {
    expect(() => render(["203.0.113.0/24; deny all"])).toThrow(/CIDR/);
  });
});
