import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { freePort, waitForPort } from "../../scripts/lib/processes.js";
import { mintToken } from "../src/auth/index.js";
import { type FakeGraph, inboundNotification, signWebhook, startFakeGraph } from "./support/fake-graph.js";
import { eventually } from "./support/gateway.js";
import { gatewayProcesses } from "./support/gateway-process.js";

// Inbound messages are committed before they are processed (events, automated replies). The gateway as a real
// process is SIGKILLed after the commit and before the processing finished; restarted on the same database it
// processes what was left, and every message is answered exactly once — also when Meta re-delivers the batch.
//
// A reply may be in flight at the kill: claimed (`sending`), and Meta either got it or not. Like Meta, the fake posts
// a signed status for every reply it accepted, to whichever gateway runs now; the restarted gateway settles the
// replies Meta got from those statuses within the in-doubt grace and sends the others again when their lease ends.

const COUNT = 400;
const SEND_TIMEOUT_MS = 2_000;
/** Longer than a restart takes on a loaded machine: a reply Meta got must be settled by its status, not re-sent. */
const IN_DOUBT_GRACE_SECONDS = 40;
const graceEnv = {
  OUTBOX_SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
  OUTBOX_IN_DOUBT_GRACE_SECONDS: String(IN_DOUBT_GRACE_SECONDS),
};
const gateways = gatewayProcesses("inbound-crash");
let fake: FakeGraph | undefined;

afterAll(async () => {
  await gateways.cleanup();
  await fake?.close();
});

describe("inbound crash safety", () => {
  it("processes every committed inbound message exactly once across a SIGKILL between commit and processing", async () => {
    const port = await freePort();
    let base = `http://127.0.0.1:${port}`;
    // Read at each post: pointed at the restarted gateway after the kill.
    const statusWebhook = {
      url: `${base}/webhooks/whatsapp`,
      appSecret: gateways.appSecret,
      retryEveryMs: 100,
      giveUpAfterMs: 150_000,
    };
    fake = await startFakeGraph({ accessToken: gateways.accessToken, statusWebhook });
    const database = "inbound.db";
    const path = join(gateways.dir, database);
    const first = gateways.start({ port, graphBaseUrl: fake.baseUrl, database, env: graceEnv });
    await waitForPort(port, "127.0.0.1", 30_000);
    const { token } = await mintToken({
      secret: gateways.apiSecret,
      sub: "crash",
      scopes: ["replies"],
      ttlSeconds: 600,
      issuer: "wagate",
      audience: "wagate",
    });
    const rule = await fetch(`${base}/v1/replies`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ match: "exact", pattern: "status?", reply: { type: "text", text: "all good" } }),
    });
    expect(rule.status).toBe(201);

    const senders = Array.from({ length: COUNT }, (_, i) => `1415555${String(i).padStart(4, "0")}`);
    const body = JSON.stringify(
      inboundNotification(senders.map((from, i) => ({ id: `wamid.crash-${i}`, from, text: "status?" }))),
    );
    const deliver = () =>
      fetch(`${base}/webhooks/whatsapp`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "x-hub-signature-256": signWebhook(gateways.appSecret, body),
        },
        body,
      });
    const delivery = deliver().catch(() => undefined);

    // The moment the batch is committed and its handling has not finished — the messages not yet processed, or
    // their automated-reply matches still pending (they are settled after Meta's answer): kill.
    const reader = new Database(path, { readonly: true });
    try {
      await eventually(
        async () => {
          const [stored, unprocessed] = reader
            .prepare(
              "SELECT COUNT(*), COUNT(*) FILTER (WHERE processed_at IS NULL) FROM inbound_messages WHERE id LIKE 'wamid.crash-%'",
            )
            .raw()
            .get() as [number, number];
          const pending = reader
            .prepare("SELECT COUNT(*) FROM auto_reply_matches WHERE outcome = 'pending'")
            .pluck()
            .get() as number;
          return stored === COUNT && (unprocessed > 0 || pending > 0) ? true : undefined;
        },
        20_000,
        "the committed batch with work left",
      );
    } finally {
      reader.close();
    }
    first.child.kill("SIGKILL");
    expect(await first.exited).toBe("SIGKILL");
    // Killed before the answer (Meta re-delivers) or after it, while the matches were still pending.
    expect([undefined, 200]).toContain((await delivery)?.status);

    const check = new Database(path, { readonly: true });
    const repliedAtKill = check.prepare("SELECT COUNT(*) FROM auto_reply_inbound").pluck().get() as number;
    check.close();
    // Killed mid-way: some (or none) were answered, not all.
    expect(repliedAtKill).toBeLessThan(COUNT);

    // A fresh port: the killed gateway's may have been taken by another test's process meanwhile.
    const secondPort = await freePort();
    base = `http://127.0.0.1:${secondPort}`;
    statusWebhook.url = `${base}/webhooks/whatsapp`;
    const second = gateways.start({ port: secondPort, graphBaseUrl: fake.baseUrl, database, env: graceEnv });
    await waitForPort(secondPort, "127.0.0.1", 30_000);
    // The restart alone (no re-delivery yet) processes what the kill left: every message answered — those a kill
    // caught in flight at the latest when their lease ends.
    await eventually(
      async () => {
        const replies = fake
          ?.accepted()
          .filter((r) => (r.text as { body?: string } | undefined)?.body === "all good");
        return replies && replies.length >= COUNT ? replies : undefined;
      },
      SEND_TIMEOUT_MS + IN_DOUBT_GRACE_SECONDS * 1000 + 60_000,
      "every reply",
    );
    // Meta then re-delivers what was never acknowledged: nothing may be answered twice.
    expect((await deliver()).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1000));
    const replies = fake
      .accepted()
      .filter((r) => (r.text as { body?: string } | undefined)?.body === "all good");
    const perSender = new Map<string, number>();
    for (const r of replies) perSender.set(String(r.to), (perSender.get(String(r.to)) ?? 0) + 1);
    expect(perSender.size).toBe(COUNT);
    expect([...perSender.values()].every((n) => n === 1)).toBe(true);

    const after = new Database(path, { readonly: true });
    try {
      expect(
        after.prepare("SELECT COUNT(*) FROM inbound_messages WHERE processed_at IS NULL").pluck().get(),
      ).toBe(0);
      expect(after.prepare("SELECT COUNT(*) FROM auto_reply_inbound").pluck().get()).toBe(COUNT);
    } finally {
      after.close();
    }
    await second.stop();
  }, 240_000);
});
