import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { startCheckpointer } from "../src/store/checkpointer.js";
import { CommitBatcher } from "../src/store/commit-batcher.js";

// The checkpointer under writes that never pause: SQLite starts the WAL over only when a write begins after
// every frame was copied, which a checkpointer running beside a busy writer never sees on its own. So it holds
// the batcher's commits while it copies the last frames; the log is then rewritten from its start instead of
// growing with every commit.

const dir = mkdtempSync(join(tmpdir(), "wagate-checkpointer-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PAGE = 4096;
const WRITES = 3000;

describe("checkpointer", () => {
  it("keeps the WAL from growing while commits follow each other without a pause; every write is kept", async () => {
    const path = join(dir, "busy.db");
    const db = new BetterSqlite3(path);
    db.pragma("journal_mode = WAL");
    db.pragma("synchronous = NORMAL");
    db.pragma("wal_autocheckpoint = 0");
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL) STRICT");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    const batcher = new CommitBatcher(db, undefined);
    const checkpointer = startCheckpointer(path, batcher, {
      intervalMs: 20,
      restartFrames: 64,
      finalFrames: 16,
    });
    let holds = 0;
    const hold = batcher.hold.bind(batcher);
    batcher.hold = () => {
      holds++;
      hold();
    };
    // One row of most of a page per commit: every commit appends at least one frame (4 KiB) to the WAL. The
    // first half also covers the worker's start; the WAL's growth is measured over the second.
    const write = () => batcher.write(() => insert.run(randomBytes(3000)));
    for (let i = 0; i < WRITES; i++) await write();
    const walBefore = statSync(`${path}-wal`).size;
    for (let i = 0; i < WRITES; i++) await write();
    const walGrowth = statSync(`${path}-wal`).size - walBefore;
    batcher.close();
    await checkpointer.stop();
    expect(db.prepare("SELECT COUNT(*) FROM t").pluck().get()).toBe(2 * WRITES);
    db.close();
    expect(holds).toBeGreaterThan(0);
    // Without a restart the log grows by every commit: at least WRITES pages.
    expect(walGrowth).toBeLessThan((WRITES * PAGE) / 4);
  });

  it("writes wait while held and are committed together once released", async () => {
    const db = new BetterSqlite3(":memory:");
    db.exec("CREATE TABLE t (v TEXT PRIMARY KEY) STRICT");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    const batcher = new CommitBatcher(db, undefined);
    batcher.hold();
    let done = 0;
    const writes = ["a", "b"].map((v) => batcher.write(() => insert.run(v)).then(() => done++));
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(done).toBe(0);
    expect(db.prepare("SELECT COUNT(*) FROM t").pluck().get()).toBe(0);
    batcher.release();
    await Promise.all(writes);
    expect(done).toBe(2);
    expect(batcher.stats.commits).toBe(1);
    batcher.close();
  });
});
