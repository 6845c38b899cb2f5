import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../src/store/migrations.js";
import { openSqliteStore } from "../src/store/sqlite.js";

// A database made by an earlier release, with rows in every table a later migration rebuilds, opened by the
// current store: the rows, their rowids and the foreign keys survive, and the rebuilt tables behave.

const dir = mkdtempSync(join(tmpdir(), "wagate-migrations-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A database at `version`, as that release left it. */
function databaseAt(path: string, version: number): Database.Database {
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
  for (const migration of MIGRATIONS.filter((m) => m.version <= version).sort(
    (a, b) => a.version - b.version,
  )) {
    db.exec(migration.sql);
    db.prepare("INSERT INTO schema_migrations VALUES (?, 0)").run(migration.version);
  }
  return db;
}

const insertMessage = `INSERT INTO messages (id, subject, kind, recipient, payload, priority, status, next_attempt_at,
  created_at, updated_at, broadcast_id) VALUES (?, 's', ?, '+14155550123', '{"type":"text","to":"+14155550123","text":{"body":"x"}}', 1, ?, 0, 0, 0, ?)`;

describe("migration 5: messages and webhook deliveries rebuilt without IN-list CHECKs", () => {
  it("keeps every row and rowid, the foreign keys and the indexes; a broadcast still counts a send in flight across the upgrade", async () => {
    const path = join(dir, "v4.db");
    const old = databaseAt(path, 4);
    old.exec(`INSERT INTO broadcasts (id, subject, template, status, total, created_at, updated_at)
              VALUES ('b1', 's', '{}', 'running', 1, 0, 0)`);
    const put = old.prepare(insertMessage);
    put.run("m-queued", "text", "queued", null);
    put.run("m-otp", "otp", "sent", null);
    put.run("m-broadcast", "template", "sending", "b1");
    old.exec(`INSERT INTO otp_codes (id, subject, phone, code_hash, created_at, expires_at, max_attempts, message_id)
              VALUES ('o1', 's', '+14155550123', x'00', 0, 1, 5, 'm-otp');
              INSERT INTO webhook_subscriptions (id, subject, url, events, secret, created_at, updated_at)
              VALUES ('w1', 's', 'https://example.com/hook', '[]', x'00', 0, 0);
              INSERT INTO webhook_events (id, type, body, occurred_at) VALUES ('e1', 'message.status', '{}', 0);
              INSERT INTO webhook_deliveries (id, subscription_id, event_id, event_type, status, next_attempt_at,
                window_started_at, created_at, updated_at) VALUES ('d1', 'w1', 'e1', 'message.status', 'pending', 0, 0, 0, 0);`);
    const rowidsBefore = old.prepare("SELECT id, rowid FROM messages ORDER BY id").all();
    old.close();

    const store = openSqliteStore(path);
    await store.close();

    const db = new Database(path);
    try {
      expect(db.prepare("SELECT MAX(version) FROM schema_migrations").pluck().get()).toBe(
        Math.max(...MIGRATIONS.map((m) => m.version)),
      );
      expect(db.prepare("SELECT id, rowid FROM messages ORDER BY id").all()).toEqual(rowidsBefore);
      expect(db.prepare("SELECT id FROM webhook_deliveries").pluck().all()).toEqual(["d1"]);
      expect(db.pragma("foreign_key_check")).toEqual([]);
      expect(db.pragma("integrity_check")).toEqual([{ integrity_check: "ok" }]);
      const indexes = db
        .prepare(
          "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name IN ('messages', 'webhook_deliveries') AND sql IS NOT NULL ORDER BY name",
        )
        .pluck()
        .all();
      expect(indexes).toEqual([
        "messages_broadcast",
        "messages_number_bulk",
        "messages_provider_id",
        "messages_queued",
        "messages_recipient",
        "messages_sending",
        "webhook_deliveries_due",
        "webhook_deliveries_leased",
        "webhook_deliveries_subscription",
      ]);
      // The constraints still hold...
      expect(() => db.prepare(insertMessage).run("m-bad", "voice", "queued", null)).toThrow(/CHECK/);
      expect(() => db.prepare(insertMessage).run("m-bad", "text", "lost", null)).toThrow(/CHECK/);
      expect(() => db.exec("UPDATE webhook_deliveries SET status = 'lost'")).toThrow(/CHECK/);
      // ...without a temporary index built at every statement.
      const plan = db.prepare(`EXPLAIN ${insertMessage}`).all("m", "text", "queued", null) as Array<{
        opcode: string;
      }>;
      expect(plan.filter((op) => op.opcode === "OpenEphemeral")).toEqual([]);
    } finally {
      db.close();
    }
    const reopened = openSqliteStore(path);
    await expect(
      reopened.claimDueMessages(Date.now(), 10, Date.now() + 1000).then((rows) => rows.map((r) => r.id)),
    ).resolves.toEqual(["m-queued"]);
    // The broadcast's counters still follow the send of the message in flight across the upgrade.
    await reopened.markSent({ id: "m-broadcast", broadcastId: "b1" }, "wamid.b1", Date.now());
    await reopened.close();
    const after = new Database(path);
    expect(after.prepare("SELECT n_sent FROM broadcasts WHERE id = 'b1'").pluck().get()).toBe(1);
    after.close();
  });
});

describe("migration 11: every outbound type as a message's kind, the CHECK widened in place", () => {
  it("admits the new kinds, still refuses others, and keeps rows, rowids, indexes and added columns", async () => {
    const path = join(dir, "v10.db");
    const old = databaseAt(path, 10);
    // What another branch's migration may have given the table meanwhile: a column and an index of its own.
    old.exec("ALTER TABLE messages ADD COLUMN extra TEXT; CREATE INDEX messages_extra ON messages (extra);");
    old.exec(`INSERT INTO broadcasts (id, subject, template, status, total, created_at, updated_at)
              VALUES ('b1', 's', '{}', 'running', 1, 0, 0)`);
    const put = old.prepare(insertMessage);
    put.run("m-text", "text", "queued", null);
    put.run("m-broadcast", "template", "sending", "b1");
    expect(() => put.run("m-image", "image", "queued", null)).toThrow(/CHECK/);
    const rowidsBefore = old.prepare("SELECT id, rowid FROM messages ORDER BY id").all();
    const schemaBefore = old
      .prepare("SELECT type, name, sql FROM sqlite_schema WHERE name <> 'messages' ORDER BY name")
      .all();
    // A connection open across the migration (another process) must see the new definition too.
    const other = new Database(path);
    const otherPut = other.prepare(insertMessage);
    old.close();

    const store = openSqliteStore(path);
    await store.close();

    const db = new Database(path);
    try {
      expect(db.prepare("SELECT version FROM schema_migrations WHERE version = 11").pluck().get()).toBe(11);
      expect(db.prepare("SELECT id, rowid FROM messages ORDER BY id").all()).toEqual(rowidsBefore);
      // Unchanged but for what migrations 12 and 14 drop and the column migration 13 adds to media (the store
      // migrates to the latest version).
      const laterChanges = (o: unknown) =>
        ![
          "messages_number_queued",
          "media",
          "messages_broadcast_progress",
          "messages_broadcast_cancelled",
        ].includes((o as { name: string }).name);
      expect(
        db
          .prepare("SELECT type, name, sql FROM sqlite_schema WHERE name <> 'messages' ORDER BY name")
          .all()
          .filter(laterChanges),
      ).toEqual(schemaBefore.filter(laterChanges));
      expect(db.pragma("integrity_check")).toEqual([{ integrity_check: "ok" }]);
      for (const kind of ["image", "video", "audio", "document", "sticker", "location", "contacts"]) {
        db.prepare(insertMessage).run(`m-${kind}`, kind, "queued", null);
      }
      otherPut.run("m-interactive", "interactive", "queued", null);
      other.prepare(insertMessage).run("m-reaction", "reaction", "queued", null);
      expect(() => db.prepare(insertMessage).run("m-bad", "voice", "queued", null)).toThrow(/CHECK/);
      expect(() => otherPut.run("m-bad", "poll", "queued", null)).toThrow(/CHECK/);
      db.exec("UPDATE messages SET extra = 'kept' WHERE id = 'm-text'");
      const plan = db.prepare(`EXPLAIN ${insertMessage}`).all("m", "text", "queued", null) as Array<{
        opcode: string;
      }>;
      expect(plan.filter((op) => op.opcode === "OpenEphemeral")).toEqual([]);
    } finally {
      db.close();
      other.close();
    }
  });

  it("refuses to migrate a table whose definition is not the expected one, and changes nothing", async () => {
    const path = join(dir, "v10-odd.db");
    const old = databaseAt(path, 10);
    // A definition edited by hand: the text the migration replaces is not there.
    old.unsafeMode(true);
    old.pragma("writable_schema = ON");
    old
      .prepare("UPDATE sqlite_schema SET sql = replace(sql, ?, ?) WHERE name = 'messages'")
      .run("kind = 'otp')", "kind = 'otp' OR kind = 'x')");
    old.pragma("writable_schema = OFF");
    old.close();
    expect(() => openSqliteStore(path)).toThrow(/definition of messages/);
    const db = new Database(path);
    try {
      expect(db.prepare("SELECT version FROM schema_migrations WHERE version = 11").get()).toBeUndefined();
      expect(db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'messages'").pluck().get()).toContain(
        "kind = 'x'",
      );
    } finally {
      db.close();
    }
  });
});

describe("migration 12: no index of queued messages by number", () => {
  it("drops it; a number's queued messages are still failed, and the outbox's statements still read indexes", async () => {
    const path = join(dir, "v7.db");
    const old = databaseAt(path, 7);
    old.exec(`INSERT INTO numbers (id, name, transport, status, status_changed_at, created_at, updated_at)
              VALUES ('n1', 'sales', 'web', 'unlinked', 0, 0, 0)`);
    const put = old.prepare(
      `${insertMessage.replace("broadcast_id)", "broadcast_id, number_id)")}`.replace("?)", "?, ?)"),
    );
    put.run("m-n1", "text", "queued", null, "n1");
    put.run("m-n1-sent", "text", "sent", null, "n1");
    put.run("m-default", "text", "queued", null, null);
    old.close();

    const store = openSqliteStore(path);
    const failed = await store.numbers.failQueuedMessages("n1", { code: "number_unlinked", message: "x" }, 1);
    expect(failed).toBe(1);
    expect((await store.getMessage("m-n1"))?.status).toBe("failed");
    expect((await store.getMessage("m-n1-sent"))?.status).toBe("sent");
    expect((await store.getMessage("m-default"))?.status).toBe("queued");
    await store.close();

    const db = new Database(path);
    try {
      expect(
        db.prepare("SELECT name FROM sqlite_schema WHERE name = 'messages_number_queued'").pluck().get(),
      ).toBeUndefined();
      const plan = (sql: string) =>
        (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as Array<{ detail: string }>).map((r) => r.detail);
      // Claims and the number's UPDATE go through the partial indexes of queued and sending rows: never a scan
      // of the whole table.
      const claim = plan(`UPDATE messages SET status = 'sending' WHERE rowid IN (SELECT rowid FROM messages
        WHERE status = 'queued' AND next_attempt_at <= 1 ORDER BY priority, next_attempt_at LIMIT 5)`);
      expect(claim).toContain("SCAN messages USING COVERING INDEX messages_queued");
      expect(
        plan("UPDATE messages SET status = 'failed' WHERE number_id = 'n1' AND status = 'queued'"),
      ).toEqual(["SCAN messages USING INDEX messages_queued"]);
      const outstanding = plan(`SELECT (SELECT COUNT(*) FROM messages WHERE status = 'queued' AND priority = 1
        AND number_id IS 'n1') + (SELECT COUNT(*) FROM messages WHERE status = 'sending' AND priority = 1 AND number_id IS 'n1')`);
      expect(outstanding).toContain("SEARCH messages USING INDEX messages_queued (priority=?)");
      expect(outstanding).toContain("SCAN messages USING INDEX messages_sending");
      expect([...claim, ...outstanding].filter((d) => d === "SCAN messages")).toEqual([]);
    } finally {
      db.close();
    }
  });
});

describe("migration 13: a web number's media source, sealed", () => {
  it("adds the source column to media; existing media keep theirs empty", async () => {
    const path = join(dir, "v12.db");
    const old = databaseAt(path, 12);
    old.exec(
      `INSERT INTO media (id, direction, provider_media_id, created_at) VALUES ('m1', 'in', '123', 0)`,
    );
    old.close();
    const store = openSqliteStore(path);
    await store.close();
    const db = new Database(path, { readonly: true });
    try {
      expect(db.prepare("SELECT id, source FROM media").all()).toEqual([{ id: "m1", source: null }]);
      expect(db.prepare("SELECT version FROM schema_migrations WHERE version = 13").pluck().get()).toBe(13);
    } finally {
      db.close();
    }
  });
});
