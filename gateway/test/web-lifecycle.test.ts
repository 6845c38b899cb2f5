import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createGateway, type Gateway } from "../src/gateway.js";
import { fakeSockets } from "./support/fake-wa-socket.js";
import { eventually, startTestGateway, type TestGateway, testEnv } from "./support/gateway.js";

// A web number's life across time: a link attempt that nobody scans ends by itself, and a linked number comes
// back after a restart with the session the store kept.

const started: TestGateway[] = [];
afterAll(async () => {
  for (const gw of started) await gw.stop().catch(() => undefined);
});

describe("web number lifecycle", () => {
  it("ends a link attempt nobody scanned after WEB_LINK_TIMEOUT_SECONDS: unlinked, nothing kept", async () => {
    const fake = fakeSockets((socket) => socket.qr());
    const gw = await startTestGateway({ WEB_LINK_TIMEOUT_SECONDS: "10" }, { webSocketFactory: fake.factory });
    started.push(gw);
    const admin = await gw.token(["admin"]);
    const id = (
      await gw.request("POST", "/v1/numbers", { token: admin, body: { name: "slow", transport: "web" } })
    ).json.id;
    const res = await gw.request("POST", `/v1/numbers/${id}/link`, { token: admin, body: { method: "qr" } });
    expect(res.status).toBe(202);
    expect(Date.parse(res.json.expires_at) - Date.now()).toBeLessThanOrEqual(10_000);
    await fake.sockets[0]?.auth.keys.set({
      "pre-key": { "1": { public: Buffer.alloc(32), private: Buffer.alloc(32, 1) } },
    });
    const status = () => gw.request("GET", `/v1/numbers/${id}`, { token: admin }).then((r) => r.json.status);
    expect(await status()).toBe("linking");
    await eventually(async () => ((await status()) === "unlinked" ? true : undefined), 15_000, "the expiry");
    expect(fake.sockets[0]?.ended).toBe(true);
    const keys = await gw.gateway.store.numbers.readSessionKeys(id, ["creds", "pre-key:1"]);
    expect(keys.size).toBe(0);
    // The next attempt may start.
    expect(
      (await gw.request("POST", `/v1/numbers/${id}/link`, { token: admin, body: { method: "qr" } })).status,
    ).toBe(202);
  }, 30_000);

  it("resumes a linked number at start with the session it stored", async () => {
    const fake = fakeSockets();
    const gw = await startTestGateway({}, { webSocketFactory: fake.factory });
    started.push(gw);
    const admin = await gw.token(["admin"]);
    const id = (
      await gw.request("POST", "/v1/numbers", { token: admin, body: { name: "kept", transport: "web" } })
    ).json.id;
    const pending = gw.request("POST", `/v1/numbers/${id}/link`, { token: admin, body: { method: "qr" } });
    (await fake.opened(0)).qr();
    expect((await pending).status).toBe(202);
    fake.sockets[0]?.paired("14155550555");
    (await fake.opened(1)).open("14155550555");
    const status = (g: Gateway) => g.store.numbers.getNumber(id).then((n) => n?.status);
    await eventually(async () => ((await status(gw.gateway)) === "connected" ? true : undefined));
    await gw.gateway.stop();

    // The same database and secret, a new process: the stored session connects by itself.
    const again = fakeSockets();
    const config = loadConfig({ ...testEnv(gw.dir), API_SECRET: gw.config.API_SECRET });
    const restarted = await createGateway(config, { logger: false, webSocketFactory: again.factory });
    try {
      await restarted.start();
      const socket = await again.opened(0);
      expect(socket.auth.creds.me?.id).toBe("14155550555:7@s.whatsapp.net");
      socket.open("14155550555");
      await eventually(async () => ((await status(restarted)) === "connected" ? true : undefined));
    } finally {
      await restarted.stop();
    }
  }, 30_000);
});
