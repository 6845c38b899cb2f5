import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { openSqliteStore } from "../src/store/sqlite.js";

// A broadcast's counters move with its messages' statuses through the store's own writes (the outcome of a send,
// Meta's status webhook, a number's queued messages failed), in the same transaction; messages of no broadcast
// move nothing. Each case checks the counters against what the messages' statuses say.

const dir = mkdtempSync(join(tmpdir(), "wagate-progress-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NOW = 1_800_000_000_000;

async function setUp(name: string) {
  const path = join(dir, `${name}.db`);
  const store = openSqliteStore(path);
  // The rows as the broadcast sender materialises them (store/sqlite-broadcasts.ts), written with another
  // connection so the test does not depend on the sender's pacing.
  const db = new Database(path);
  db.exec(`INSERT INTO broadcasts (id, subject, template, status, total, created_at, updated_at)
           VALUES ('b1', 's', '{}', 'running', 4, 0, 0), ('b2', 's', '{}', 'running', 1, 0, 0)`);
  const put = db.prepare(`INSERT INTO messages (id, subject, kind, recipient, payload, priority, status,
      next_attempt_at, created_at, updated_at, broadcast_id, number_id)
    VALUES (?, 's', 'text', ?, '{"type":"text","to":"+14155550100","text":{"body":"x"}}', 5, 'queued', 0, 0, 0, ?, ?)`);
  put.run("m1", "+14155550101", "b1", null);
  put.run("m2", "+14155550102", "b1", null);
  put.run("m3", "+14155550103", "b1", "n1");
  put.run("m4", "+14155550104", "b1", "n1");
  put.run("m5", "+14155550105", "b2", "n1");
  put.run("single", "+14155550106", null, null);
  const counters = () =>
    db
      .prepare(
        "SELECT id, n_sent AS sent, n_delivered AS delivered, n_read AS read, n_failed AS failed, n_skipped AS skipped FROM broadcasts ORDER BY id",
      )
      .all();
  const statuses = () => db.prepare("SELECT id, status FROM messages ORDER BY id").all();
  /** Claims every due message; `claimed(id)` is that message as the outbox holds it. */
  const claimAll = async () => {
    const byId = new Map((await store.claimDueMessages(NOW, 10, NOW + 60_000)).map((m) => [m.id, m]));
    return (id: string) => {
      const message = byId.get(id);
      if (!message) throw new Error(`${id} was not claimed`);
      return message;
    };
  };
  return { store, db, counters, statuses, claimAll };
}

describe("broadcast progress", () => {
  it("counts a send's outcome and Meta's later statuses, once each, for broadcast messages only", async () => {
    const { store, db, counters, claimAll } = await setUp("outcomes");
    try {
      const claimed = await claimAll();
      expect(claimed("m1").broadcastId).toBe("b1");
      expect(claimed("single").broadcastId).toBeNull();
      await store.markSent(claimed("m1"), "wamid.m1", NOW);
      await store.markSent(claimed("m2"), "wamid.m2", NOW);
      await store.markFailed(claimed("m3"), { code: "131026", message: "undeliverable" }, NOW);
      await store.markSent(claimed("single"), "wamid.single", NOW);
      // A second outcome for a row no longer `sending` moves nothing.
      await store.markFailed(claimed("m1"), { code: "x", message: "late" }, NOW);
      // Meta's statuses: m1 delivered then read, m2 read at once (delivered implied), a repeat changes nothing.
      await store.recordWebhook(
        [
          { providerMessageId: "wamid.m1", status: "delivered", at: NOW },
          { providerMessageId: "wamid.m1", status: "read", at: NOW },
          { providerMessageId: "wamid.m2", status: "read", at: NOW },
          { providerMessageId: "wamid.m2", status: "delivered", at: NOW },
          { providerMessageId: "wamid.single", status: "read", at: NOW },
        ],
        [],
        NOW,
      );
      expect(counters()).toEqual([
        { id: "b1", sent: 2, delivered: 2, read: 2, failed: 1, skipped: 0 },
        { id: "b2", sent: 0, delivered: 0, read: 0, failed: 0, skipped: 0 },
      ]);
    } finally {
      await store.close();
      db.close();
    }
  });

  it("drops a cancelled broadcast's send that comes back for a retry, counted as skipped; a running one's is kept", async () => {
    const { store, db, counters, statuses, claimAll } = await setUp("retry");
    try {
      const claimed = await claimAll();
      db.exec("UPDATE broadcasts SET status = 'cancelled' WHERE id = 'b1'");
      const error = { code: "130429", message: "throughput" };
      await store.markRetry(claimed("m1"), NOW + 1000, error, NOW);
      await store.markRetry(claimed("m5"), NOW + 1000, error, NOW);
      await store.markRetry(claimed("single"), NOW + 1000, error, NOW);
      expect(statuses()).toEqual([
        { id: "m2", status: "sending" },
        { id: "m3", status: "sending" },
        { id: "m4", status: "sending" },
        { id: "m5", status: "queued" },
        { id: "single", status: "queued" },
      ]);
      expect(counters()).toEqual([
        { id: "b1", sent: 0, delivered: 0, read: 0, failed: 0, skipped: 1 },
        { id: "b2", sent: 0, delivered: 0, read: 0, failed: 0, skipped: 0 },
      ]);
    } finally {
      await store.close();
      db.close();
    }
  });

  it("counts a removed number's queued messages as failed, per broadcast", async () => {
    const { store, db, counters } = await setUp("number");
    try {
      const failed = await store.numbers.failQueuedMessages(
        "n1",
        { code: "number_unlinked", message: "unlinked" },
        NOW,
      );
      expect(failed).toBe(3);
      expect(counters()).toEqual([
        { id: "b1", sent: 0, delivered: 0, read: 0, failed: 2, skipped: 0 },
        { id: "b2", sent: 0, delivered: 0, read: 0, failed: 1, skipped: 0 },
      ]);
    } finally {
      await store.close();
      db.close();
    }
  });
});
