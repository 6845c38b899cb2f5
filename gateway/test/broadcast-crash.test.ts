import { afterAll, describe, expect, it } from "vitest";
import { freePort, waitForPort } from "../../scripts/lib/processes.js";
import { mintToken } from "../src/auth/index.js";
import { type FakeGraph, startFakeGraph } from "./support/fake-graph.js";
import { eventually } from "./support/gateway.js";
import { gatewayProcesses } from "./support/gateway-process.js";

// A broadcast in a real gateway process, SIGKILLed twice mid-broadcast (sends in flight at the provider, rows
// materialised but not claimed, recipients not yet materialised), restarted on the same database each time:
// the fake Graph API must receive every recipient exactly once.

const COUNT = 300;

const gateways = gatewayProcesses("broadcast-crash");
const { apiSecret: API_SECRET, appSecret: APP_SECRET, accessToken } = gateways;
let fake: FakeGraph | undefined;

afterAll(async () => {
  await gateways.cleanup();
  await fake?.close();
});

/** Sends in flight at a kill stay in doubt until their lease ends (send timeout + grace); the test waits past it. */
const IN_DOUBT_GRACE_SECONDS = 10;
const SEND_TIMEOUT_MS = 10_000;

const startGateway = (port: number, graphBaseUrl: string) =>
  gateways.start({
    port,
    graphBaseUrl,
    database: "broadcast.db",
    env: {
      OUTBOX_CONCURRENCY: "16",
      BROADCAST_RATE_PER_SECOND: "100",
      OUTBOX_SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
      OUTBOX_IN_DOUBT_GRACE_SECONDS: String(IN_DOUBT_GRACE_SECONDS),
    },
  });

describe("broadcast crash safety", () => {
  it("resumes after SIGKILL and sends every recipient exactly once", async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    fake = await startFakeGraph({
      accessToken,
      latencyMs: 300,
      statusWebhook: { url: `${base}/webhooks/whatsapp`, appSecret: APP_SECRET, retryEveryMs: 100 },
    });
    let gateway = startGateway(port, fake.baseUrl);
    await waitForPort(port, "127.0.0.1", 30_000);
    const { token } = await mintToken({
      secret: API_SECRET,
      sub: "broadcast-crash",
      scopes: ["broadcasts"],
      ttlSeconds: 600,
      issuer: "wagate",
      audience: "wagate",
    });
    const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const recipients = Array.from({ length: COUNT }, (_, i) => `+3161${String(i).padStart(7, "0")}`);
    const created = await fetch(`${base}/v1/broadcasts`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ template: { name: "crash_test", language: "en_US" }, recipients }),
    });
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };

    let leasesEnd = 0;
    for (const killAt of [60, 160]) {
      await fake.waitForRequests(killAt);
      leasesEnd = Date.now() + SEND_TIMEOUT_MS + IN_DOUBT_GRACE_SECONDS * 1000;
      gateway.child.kill("SIGKILL");
      expect(await gateway.exited).toBe("SIGKILL");
      const atKill = fake.requests.length;
      expect(atKill).toBeLessThan(COUNT);
      gateway = startGateway(port, fake.baseUrl);
      await waitForPort(port, "127.0.0.1", 30_000);
    }

    const view = await eventually(
      async () => {
        const r = await fetch(`${base}/v1/broadcasts/${id}`, { headers: auth });
        const body = (await r.json()) as { status: string; sent: number; total: number };
        return body.status === "completed" ? body : undefined;
      },
      200_000,
      "the broadcast to complete after the restarts",
    );
    expect(view).toMatchObject({ total: COUNT, sent: COUNT, failed: 0 });
    // Past the leases of the sends in flight at the last kill: one that Meta's status had not settled would have
    // been sent again by now.
    await new Promise((r) => setTimeout(r, Math.max(0, leasesEnd + 2_000 - Date.now())));

    const received = new Map<string, number>();
    for (const body of fake.accepted()) {
      const to = String(body.to);
      received.set(to, (received.get(to) ?? 0) + 1);
    }
    for (const to of recipients) expect(received.get(to.slice(1)), to).toBe(1);
    expect(fake.requests).toHaveLength(COUNT);
    await gateway.stop();
  }, 240_000); // two restarts and 300 sends on a shared 2-core machine; the figures are for bench:broadcast
});
