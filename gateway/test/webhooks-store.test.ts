import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/store/sqlite.js";
import type { Store } from "../src/store/store.js";

// The delivery queue in SQLite: which subscriptions an event reaches, dedupe keys, leases, and pruning.

let dir: string;
let store: Store;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "wagate-hooks-"));
  store = openSqliteStore(join(dir, "db.sqlite"));
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const sub = (id: string, subject: string, events: Array<"message.received" | "otp.verified">) => ({
  id,
  subject,
  url: "https://example.test/hook",
  events,
  sealedSecret: Buffer.from("sealed"),
  createdAt: 1,
  updatedAt: 1,
});

describe("webhook delivery queue", () => {
  it("routes owned events to their owner and unowned ones to every subscriber; a dedupe key counts once", async () => {
    expect(
      await store.createWebhook(
        sub("00000000-0000-7000-8000-000000000001", "a", ["message.received", "otp.verified"]),
        5,
      ),
    ).toBe(true);
    expect(
      await store.createWebhook(
        sub("00000000-0000-7000-8000-000000000002", "b", ["otp.verified", "message.received"]),
        5,
      ),
    ).toBe(true);
    const owned = { type: "otp.verified" as const, subject: "a", data: {}, occurredAt: 10 };
    expect(await store.recordEvent({ ...owned, id: "e1" }, "{}", 10)).toBe(1);
    const inbound = { type: "message.received" as const, data: {}, occurredAt: 10, dedupeKey: "in-1" };
    expect(await store.recordEvent({ ...inbound, id: "e2" }, "{}", 10)).toBe(2);
    expect(await store.recordEvent({ ...inbound, id: "e3" }, "{}", 11)).toBe(0);
    expect(
      await store.createWebhook(sub("00000000-0000-7000-8000-000000000003", "a", ["otp.verified"]), 1),
    ).toBe(false);
  });

  it("leases claims, re-claims after the lease, and prunes only settled history", async () => {
    const id = "00000000-0000-7000-8000-000000000004";
    await store.createWebhook(sub(id, "a", ["otp.verified"]), 5);
    await store.recordEvent(
      { id: "e1", type: "otp.verified", subject: "a", data: {}, occurredAt: 100 },
      '{"x":1}',
      100,
    );
    await store.recordEvent(
      { id: "e2", type: "otp.verified", subject: "a", data: {}, occurredAt: 100 },
      '{"x":2}',
      100,
    );
    const first = await store.claimDueDeliveries(100, 10, 200);
    expect(first.map((d) => d.body).sort()).toEqual(['{"x":1}', '{"x":2}']);
    expect(await store.claimDueDeliveries(150, 10, 300)).toEqual([]);
    const again = await store.claimDueDeliveries(200, 1, 400);
    expect(again).toHaveLength(1);
    expect(again[0]?.attempts).toBe(2);
    const done = first.find((d) => d.id !== again[0]?.id);
    await store.markDelivered(done?.id as string, 200, 250);
    expect(await store.pruneWebhookHistory(1_000)).toBe(1);
    const left = await store.listDeliveries("a", id, { limit: 10 });
    expect(left?.map((d) => d.id)).toEqual([again[0]?.id]);
  });
});
