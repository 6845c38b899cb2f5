import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePort, waitForPort } from "../../scripts/lib/processes.js";
import { mintToken } from "../src/auth/index.js";
import { type FakeGraph, startFakeGraph } from "./support/fake-graph.js";
import { eventually } from "./support/gateway.js";
import { gatewayProcesses } from "./support/gateway-process.js";

// The gateway as a real process: accept messages, SIGKILL it right after the 202s while some sends are in
// flight at the provider and the rest are still queued, restart it on the same database, and check that the
// fake Graph API received every accepted message exactly once.

const COUNT = 40;
const CONCURRENCY = 8;

const gateways = gatewayProcesses("crash");
const { dir, apiSecret: API_SECRET, appSecret: APP_SECRET, accessToken } = gateways;
let fake: FakeGraph | undefined;

afterAll(async () => {
  await gateways.cleanup();
  await fake?.close();
});

/**
 * The sends in flight at the kill are in doubt until their lease ends (send timeout 10 s + this grace after
 * their claim); only Meta's status webhooks settle them before that. The test waits past the lease, so a
 * settlement that did not happen would show as a second send.
 */
const IN_DOUBT_GRACE_SECONDS = 10;
const SEND_TIMEOUT_MS = 10_000;

const startGateway = (port: number, graphBaseUrl: string, database: string) =>
  gateways.start({
    port,
    graphBaseUrl,
    database,
    env: {
      OUTBOX_CONCURRENCY: String(CONCURRENCY),
      OUTBOX_SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
      OUTBOX_IN_DOUBT_GRACE_SECONDS: String(IN_DOUBT_GRACE_SECONDS),
    },
  });

describe("crash safety", () => {
  it("sends every accepted message exactly once across a SIGKILL and a restart", async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    // The fake holds its answers long enough that the kill lands while sends are in flight.
    fake = await startFakeGraph({
      accessToken,
      latencyMs: 3_000,
      statusWebhook: { url: `${base}/webhooks/whatsapp`, appSecret: APP_SECRET, retryEveryMs: 100 },
    });
    const first = startGateway(port, fake.baseUrl, "crash.db");
    await waitForPort(port, "127.0.0.1", 30_000);

    const { token } = await mintToken({
      secret: API_SECRET,
      sub: "crash-test",
      scopes: ["messages:send", "messages:read"],
      ttlSeconds: 600,
      issuer: "wagate",
      audience: "wagate",
    });
    const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
    const ids = await Promise.all(
      Array.from({ length: COUNT }, async (_, i) => {
        const response = await fetch(`${base}/v1/messages`, {
          method: "POST",
          headers: auth,
          body: JSON.stringify({ type: "text", to: "+14155550123", text: { body: `message ${i}` } }),
        });
        expect(response.status).toBe(202);
        return ((await response.json()) as { id: string }).id;
      }),
    );
    await fake.waitForRequests(CONCURRENCY);
    // The in-flight sends were claimed before this: their leases end before `leasesEnd`.
    const leasesEnd = Date.now() + SEND_TIMEOUT_MS + IN_DOUBT_GRACE_SECONDS * 1000;
    first.child.kill("SIGKILL");
    expect(await first.exited).toBe("SIGKILL");
    // At the kill: CONCURRENCY sends were at the provider without an answer, the rest never left.
    expect(fake.requests.length).toBe(CONCURRENCY);

    fake.setLatency(0);
    const second = startGateway(port, fake.baseUrl, "crash.db");
    await waitForPort(port, "127.0.0.1", 30_000);

    const statuses = await eventually(
      async () => {
        const all = await Promise.all(
          ids.map(async (id) => {
            const r = await fetch(`${base}/v1/messages/${id}`, { headers: auth });
            return ((await r.json()) as { status: string }).status;
          }),
        );
        return all.every((s) => s === "sent") ? all : undefined;
      },
      45_000,
      "all messages sent after the restart",
    );
    expect(statuses).toHaveLength(COUNT);
    // Past every lease: a row in doubt that Meta's status had not settled would have been sent again by now.
    await new Promise((r) => setTimeout(r, Math.max(0, leasesEnd + 2_000 - Date.now())));

    const received = new Map<string, number>();
    for (const body of fake.accepted()) {
      const id = String(body.biz_opaque_callback_data);
      received.set(id, (received.get(id) ?? 0) + 1);
    }
    for (const id of ids) expect(received.get(id), `message ${id}`).toBe(1);
    expect(fake.accepted()).toHaveLength(COUNT);
    await second.stop();
  });

  it("stops cleanly on SIGTERM: exit code 0, accepted messages kept", async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const graph = await startFakeGraph({ accessToken });
    try {
      const gateway = startGateway(port, graph.baseUrl, "sigterm.db");
      await waitForPort(port, "127.0.0.1", 30_000);
      const { token } = await mintToken({
        secret: API_SECRET,
        sub: "sigterm-test",
        scopes: ["messages:send", "messages:read"],
        ttlSeconds: 600,
        issuer: "wagate",
        audience: "wagate",
      });
      const response = await fetch(`${base}/v1/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ type: "text", to: "+14155550123", text: { body: "before SIGTERM" } }),
      });
      expect(response.status).toBe(202);
      gateway.child.kill("SIGTERM");
      expect(await gateway.exited).toBe(0);
      // The message was either sent before the stop or is still queued in the database for the next start.
      const { default: Database } = await import("better-sqlite3");
      const db = new Database(join(dir, "sigterm.db"), { readonly: true });
      const { id } = (await response.json()) as { id: string };
      const row = db.prepare("SELECT status FROM messages WHERE id = ?").get(id) as
        | { status: string }
        | undefined;
      db.close();
      expect(["queued", "sent"]).toContain(row?.status);
      expect(graph.accepted().length).toBe(row?.status === "sent" ? 1 : 0);
    } finally {
      await graph.close();
    }
  });
});
