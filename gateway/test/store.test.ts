import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { uuidv7 } from "../src/ids.js";
import { MIGRATIONS } from "../src/store/migrations.js";
import { openSqliteStore } from "../src/store/sqlite.js";
import type { NewMessage } from "../src/store/store.js";

// The SQLite store on a real file: group commit isolates failures, migrations run once, reopening keeps data.

const dir = mkdtempSync(join(tmpdir(), "wagate-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const message = (id = uuidv7()): NewMessage => ({
  id,
  subject: "s",
  kind: "text",
  message: { type: "text", to: "+14155550123", text: { body: "x" } },
  priority: 0,
  createdAt: Date.now(),
});

describe("SQLite store", () => {
  it.each([
    ["after COMMIT (DATABASE_SYNC=normal)", false],
    ["after the WAL's fsync (DATABASE_SYNC=full)", true],
  ])("commits a burst together, answering %s; a failing write undoes only itself", async (_name, fsync) => {
    const path = join(dir, `burst-${fsync}.db`);
    const store = openSqliteStore(path, { fsync });
    const duplicate = message();
    const results = await Promise.allSettled([
      store.enqueueMessage(message()),
      store.enqueueMessage(duplicate),
      store.enqueueMessage(duplicate),
      store.enqueueMessage(message()),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled"]);
    await store.close();
    const db = new Database(path, { readonly: true });
    expect((db.prepare("SELECT COUNT(*) AS n FROM messages").get() as { n: number }).n).toBe(3);
    db.close();
  });

  it("migrates once and keeps data across reopenings", async () => {
    const path = join(dir, "reopen.db");
    const first = openSqliteStore(path);
    const m = message();
    await first.enqueueMessage(m);
    await first.revokeToken("jti-1", Date.now());
    await first.close();
    const second = openSqliteStore(path);
    expect((await second.getMessage(m.id))?.status).toBe("queued");
    expect(await second.isTokenRevoked("jti-1")).toBe(true);
    await second.close();
    const db = new Database(path, { readonly: true });
    expect(db.prepare("SELECT version FROM schema_migrations ORDER BY version").all()).toEqual(
      MIGRATIONS.map((m) => ({ version: m.version })).sort((a, b) => a.version - b.version),
    );
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    db.close();
  });

  it("claims the lowest priority number first and re-claims a sending row only after its lease", async () => {
    const store = openSqliteStore(join(dir, "claim.db"));
    const now = Date.now();
    const bulk = { ...message(), priority: 10, createdAt: now - 1000 };
    const single = { ...message(), priority: 0, createdAt: now };
    await store.enqueueMessage(bulk);
    await store.enqueueMessage(single);
    const first = await store.claimDueMessages(now, 1, now + 5000);
    expect(first.map((r) => r.id)).toEqual([single.id]);
    expect(first[0]?.attempts).toBe(1);
    expect((await store.claimDueMessages(now, 5, now + 5000)).map((r) => r.id)).toEqual([bulk.id]);
    expect(await store.claimDueMessages(now + 4000, 5, now + 9000)).toEqual([]);
    const again = await store.claimDueMessages(now + 6000, 5, now + 11_000);
    expect(again.map((r) => r.id).sort()).toEqual([bulk.id, single.id].sort());
    expect(again.every((r) => r.attempts === 2)).toBe(true);
    await store.close();
  });

  it("sees a revocation committed by another process at the next turn of the event loop", async () => {
    const path = join(dir, "revocations.db");
    const gatewayStore = openSqliteStore(path);
    expect(await gatewayStore.isTokenRevoked("leaked")).toBe(false);
    const operator = openSqliteStore(path); // as `npm run revoke` does
    await operator.revokeToken("leaked", Date.now());
    await operator.close();
    await new Promise((resolve) => setImmediate(resolve));
    expect(await gatewayStore.isTokenRevoked("leaked")).toBe(true);
    expect(await gatewayStore.isTokenRevoked("other")).toBe(false);
    await gatewayStore.revokeToken("own", Date.now());
    expect(await gatewayStore.isTokenRevoked("own")).toBe(true);
    await gatewayStore.close();
  });

  it("makes ids that sort by creation time", () => {
    const a = uuidv7(1_700_000_000_000);
    const b = uuidv7(1_700_000_000_001);
    expect(a < b).toBe(true);
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(Number.parseInt(a.replaceAll("-", "").slice(0, 12), 16)).toBe(1_700_000_000_000);
    // Same millisecond: the random bits alone keep ids apart.
    const sameMillisecond = new Set(Array.from({ length: 10_000 }, () => uuidv7(1_700_000_000_000)));
    expect(sameMillisecond.size).toBe(10_000);
  });
});
