import { pbkdf2 } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { CommitBatcher } from "../src/store/commit-batcher.js";

function database() {
  const db = new BetterSqlite3(":memory:");
  db.exec("CREATE TABLE t (v TEXT PRIMARY KEY) STRICT");
  const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
  const values = () => (db.prepare("SELECT v FROM t ORDER BY v").pluck().all() as string[]).join(",");
  return { db, insert, values };
}

describe("CommitBatcher", () => {
  it("commits the writes of one turn together and answers each", async () => {
    const { db, insert, values } = database();
    const batcher = new CommitBatcher(db, undefined);
    const results = await Promise.all(["a", "b", "c"].map((v) => batcher.write(() => insert.run(v).changes)));
    expect(results).toEqual([1, 1, 1]);
    expect(values()).toBe("a,b,c");
    batcher.close();
  });

  it("a write that throws undoes only itself, even after it changed rows", async () => {
    const { db, insert, values } = database();
    const batcher = new CommitBatcher(db, undefined);
    const first = batcher.write(() => insert.run("a").changes);
    const failing = batcher.write(() => {
      insert.run("half-done");
      insert.run("a"); // primary key conflict: this write fails after one insert of its own
    });
    const last = batcher.write(() => insert.run("z").changes);
    await expect(failing).rejects.toThrow(/UNIQUE/);
    expect(await first).toBe(1);
    expect(await last).toBe(1);
    expect(values()).toBe("a,z");
    batcher.close();
  });

  it("bookkeeping alone is committed shortly; with a client write it joins that write's commit", async () => {
    const { db, insert, values } = database();
    const batcher = new CommitBatcher(db, undefined);
    await batcher.write(() => insert.run("alone"), { durable: false });
    expect(values()).toBe("alone");
    let bookkeepingDone = false;
    const bookkeeping = batcher
      .write(() => insert.run("bookkeeping"), { durable: false })
      .then(() => {
        bookkeepingDone = true;
      });
    await batcher.write(() => insert.run("client"));
    // Resolved in the same flush as the client's write, not after its own delay.
    await Promise.resolve();
    expect(bookkeepingDone).toBe(true);
    await bookkeeping;
    expect(values()).toBe("alone,bookkeeping,client");
    batcher.close();
  });

  it("keeps batching after a failed batch", async () => {
    const { db, insert, values } = database();
    const batcher = new CommitBatcher(db, undefined);
    await expect(
      batcher.write(() => {
        throw new Error("refused");
      }),
    ).rejects.toThrow("refused");
    await batcher.write(() => insert.run("b"));
    expect(values()).toBe("b");
    batcher.close();
  });

  it("group commit: a write answers only after the WAL's sync; everything accepted during a sync shares the next commit and sync", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wagate-batcher-"));
    const path = join(dir, "db.sqlite");
    const db = new BetterSqlite3(path);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.exec("CREATE TABLE t (v TEXT PRIMARY KEY) STRICT");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    const batcher = new CommitBatcher(db, `${path}-wal`);
    try {
      // Keep libuv's 4 pool threads busy so the sync queued behind them stays in flight for several turns.
      const busy = Array.from(
        { length: 4 },
        () => new Promise((resolve) => pbkdf2("x", "y", 300_000, 32, "sha256", resolve)),
      );
      let firstAnswered = false;
      const first = batcher
        .write(() => insert.run("first").changes)
        .then((changes) => {
          firstAnswered = true;
          return changes;
        });
      const turn = () => new Promise((resolve) => setImmediate(resolve));
      await turn();
      expect(batcher.stats).toEqual({ commits: 1, syncs: 1 });
      // Committed (another connection sees it) but not yet synced: not answered.
      const reader = new BetterSqlite3(path, { readonly: true });
      expect(reader.prepare("SELECT COUNT(*) FROM t").pluck().get()).toBe(1);
      reader.close();
      const later: Array<Promise<number>> = [];
      for (let i = 0; i < 5; i++) {
        later.push(batcher.write(() => insert.run(`later-${i}`).changes));
        later.push(batcher.write(() => insert.run(`bookkeeping-${i}`).changes, { durable: false }));
        await turn();
      }
      expect(firstAnswered).toBe(false);
      // Five turns of writes, none committed while the sync runs.
      expect(batcher.stats).toEqual({ commits: 1, syncs: 1 });
      await Promise.all(busy);
      expect(await first).toBe(1);
      expect(await Promise.all(later)).toEqual(Array(10).fill(1));
      // One commit and one sync for all of them.
      expect(batcher.stats).toEqual({ commits: 2, syncs: 2 });
    } finally {
      batcher.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a durable write that changed nothing answers without a sync, unless what it read is not yet synced", async () => {
    const dir = mkdtempSync(join(tmpdir(), "wagate-batcher-"));
    const path = join(dir, "db.sqlite");
    const db = new BetterSqlite3(path);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.exec("CREATE TABLE t (v TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0) STRICT");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    // Like an OTP check: spends an attempt while any are left, else changes nothing.
    const spend = db.prepare("UPDATE t SET n = n + 1 WHERE v = ? AND n < 1");
    const batcher = new CommitBatcher(db, `${path}-wal`);
    try {
      await batcher.write(() => insert.run("a"));
      expect(batcher.stats).toEqual({ commits: 1, syncs: 1 });
      expect(await batcher.write(() => spend.run("a").changes)).toBe(1);
      expect(batcher.stats).toEqual({ commits: 2, syncs: 2 });
      // Nothing changed and everything before is synced: no sync.
      expect(await batcher.write(() => spend.run("a").changes)).toBe(0);
      expect(await batcher.write(() => spend.run("a").changes)).toBe(0);
      expect(batcher.stats).toEqual({ commits: 4, syncs: 2 });
      // Bookkeeping committed a change nobody synced: a write that reads after it waits for a sync.
      await batcher.write(() => insert.run("b"), { durable: false });
      expect(batcher.stats).toEqual({ commits: 5, syncs: 2 });
      expect(await batcher.write(() => spend.run("a").changes)).toBe(0);
      expect(batcher.stats).toEqual({ commits: 6, syncs: 3 });
      // A write that changes rows always waits for its sync.
      await batcher.write(() => insert.run("c"));
      expect(batcher.stats).toEqual({ commits: 7, syncs: 4 });
    } finally {
      batcher.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
