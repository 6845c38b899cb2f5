import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestGateway, type TestGateway } from "./support/gateway.js";

// The real Baileys client (7.0.0-rc14) on a machine that cannot reach WhatsApp, as this one: a link attempt answers
// within seconds with a JSON error naming what went wrong, the number goes back to unlinked, and the gateway stays up.

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway();
});
afterAll(async () => {
  await gw?.stop();
});

describe("linking with the real Baileys client, offline", () => {
  it("answers with a clear status within seconds and keeps serving", async () => {
    const admin = await gw.token(["admin"]);
    const created = await gw.request("POST", "/v1/numbers", {
      token: admin,
      body: { name: "real", transport: "web" },
    });
    const started = Date.now();
    const res = await gw.request("POST", `/v1/numbers/${created.json.id}/link`, {
      token: admin,
      body: { method: "qr" },
    });
    const elapsed = Date.now() - started;
    // Offline the answer is a 503 naming why; were WhatsApp reachable it would be the 202 with a QR code.
    expect([202, 503]).toContain(res.status);
    if (res.status === 503) {
      expect(res.json.error.code).toBe("link_unavailable");
      expect(res.json.error.message).toMatch(/^link: /);
    }
    expect(elapsed).toBeLessThan(25_000);
    expect((await gw.request("GET", "/healthz")).status).toBe(200);
    const view = await gw.request("GET", `/v1/numbers/${created.json.id}`, { token: admin });
    expect(["unlinked", "linking"]).toContain(view.json.status);
    // Nothing of the attempt was written outside the store.
    expect(gw.logs()).not.toMatch(/noiseKey|signedIdentityKey|advSecretKey/);
  }, 40_000);
});
