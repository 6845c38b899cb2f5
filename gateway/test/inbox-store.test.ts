import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../src/store/migrations.js";
import { openSqliteStore } from "../src/store/sqlite.js";
import {
  conversationListSql,
  INBOX_SQL,
  inboundListSql,
  outboundListSql,
} from "../src/store/sqlite-inbox.js";
import type { InboundMessage } from "../src/store/store.js";

// The inbox's storage: the query plans that keep listing fast at a million rows (each listing reads an index in
// its own order and stops after a page: no full scan, no sort), read marks per conversation, the conversations the
// trigger keeps, and migration 8 on a database that already holds inbound messages.

const dir = mkdtempSync(join(tmpdir(), "wagate-inbox-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const FLAGS = ["", "c", "n", "b", "cn", "cb", "nb", "cnb"];
const PARAMS: Record<string, unknown> = {
  limit: 50,
  contact: "+14155550101",
  numberId: "n1",
  numberKey: "n1",
  receivedAt: 1,
  rowid: 1,
  before: 1,
  subject: "s",
  lastReceivedAt: 1,
  beforeContact: "+14155550101",
  beforeNumberKey: "",
  now: 1,
  sender: "+14155550101",
};

function plan(db: Database.Database, sql: string): string {
  const used = Object.fromEntries(Object.entries(PARAMS).filter(([k]) => sql.includes(`@${k}`)));
  return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(used) as Array<{ detail: string }>)
    .map((r) => r.detail)
    .join(" | ");
}

describe("query plans (EXPLAIN QUERY PLAN on the migrated schema)", () => {
  const path = join(dir, "plans.db");
  it("reads inbound pages from the index of their filter, in order: no sort, no scan of other rows", async () => {
    await openSqliteStore(path).close();
    const db = new Database(path, { readonly: true });
    try {
      const expected: Record<string, RegExp> = {
        "": /^SCAN inbound_messages USING INDEX inbound_messages_received$/,
        c: /^SEARCH inbound_messages USING INDEX inbound_messages_sender \(sender=\?\)$/,
        n: /^SEARCH inbound_messages USING INDEX inbound_messages_number \(number_id=\?\)$/,
        b: /^SEARCH inbound_messages USING INDEX inbound_messages_received \(received_at<\?\)$/,
        cn: /^SEARCH inbound_messages USING INDEX inbound_messages_sender \(sender=\?\)$/,
        cb: /^SEARCH inbound_messages USING INDEX inbound_messages_sender \(sender=\? AND received_at<\?\)$/,
        nb: /^SEARCH inbound_messages USING INDEX inbound_messages_number \(number_id=\? AND received_at<\?\)$/,
        cnb: /^SEARCH inbound_messages USING INDEX inbound_messages_sender \(sender=\? AND received_at<\?\)$/,
      };
      for (const flags of FLAGS)
        expect([flags, plan(db, inboundListSql(flags))]).toEqual([
          flags,
          expect.stringMatching(expected[flags] as RegExp),
        ]);

      // Outbound: by rowid (no index added to the send path's table), or the recipient's index, in rowid order.
      for (const flags of FLAGS) {
        const p = plan(db, outboundListSql(flags));
        expect([flags, p]).toEqual([
          flags,
          flags.includes("c")
            ? expect.stringMatching(/^SEARCH messages USING INDEX messages_recipient \(recipient=\?/)
            : expect.stringMatching(
                /^(SCAN messages|SEARCH messages USING INTEGER PRIMARY KEY \(rowid<\?\))$/,
              ),
        ]);
      }

      for (const flags of FLAGS) {
        const p = plan(db, conversationListSql(flags));
        // With a contact: its rows by primary key (one per number), sorted; a handful at most.
        if (flags.includes("c"))
          expect(p).toMatch(/^SEARCH inbound_conversations USING PRIMARY KEY \(contact=\?/);
        else {
          expect(p).toMatch(/USING (COVERING )?INDEX inbound_conversations_(recent|number)/);
          expect(p).not.toContain("TEMP B-TREE");
        }
      }

      expect(plan(db, INBOX_SQL.unread.replaceAll("?", "@sender"))).toBe(
        "SEARCH inbound_messages USING INDEX inbound_messages_unread (sender=? AND number_id=?)",
      );
      expect(plan(db, INBOX_SQL.markRead)).toBe(
        "SEARCH inbound_messages USING INDEX inbound_messages_unread (sender=? AND number_id=?)",
      );
      expect(plan(db, INBOX_SQL.lastOutbound)).toBe(
        "SEARCH messages USING INDEX messages_recipient (recipient=?)",
      );
    } finally {
      db.close();
    }
  });
});

const text = (id: string, from: string, sentAt: number, numberId?: string): InboundMessage => ({
  id,
  from,
  type: "text",
  text: id,
  sentAt,
  raw: { id },
  content: { text: { body: id } },
  ...(numberId ? { numberId } : {}),
});

describe("recovery", () => {
  it("hands a message a crash left unprocessed back with its content, medium and profile name", async () => {
    const store = openSqliteStore(join(dir, "recovery.db"));
    try {
      const image: InboundMessage = {
        id: "wamid.r-image",
        from: "+14155550101",
        type: "image",
        text: null,
        sentAt: 1000,
        raw: { id: "wamid.r-image" },
        numberId: "n1",
        content: { image: { id: "1003383421387256", caption: "c" }, context: { id: "wamid.q" } },
        mediaId: "1003383421387256",
        profileName: "Ana",
      };
      await store.recordWebhook([], [image, text("r-text", "+14155550102", 1100)], 10_000);
      // What the pipeline's recovery reads: the same as the live message it would have processed.
      const [first, second] = await store.unprocessedInbound(10);
      expect(first).toEqual(image);
      expect(second).toMatchObject({ id: "r-text", content: { text: { body: "r-text" } }, mediaId: null });
    } finally {
      await store.close();
    }
  });
});

describe("read marks and conversations", () => {
  it("marks a message and the earlier ones of its conversation only; the trigger keeps the last message", async () => {
    const store = openSqliteStore(join(dir, "marks.db"));
    try {
      const ana = "+14155550101";
      await store.recordWebhook([], [text("a1", ana, 1000), text("a2", ana, 2000)], 10_000);
      await store.recordWebhook(
        [],
        [text("other-number", ana, 2500, "n1"), text("ben", "+14155550102", 2600)],
        11_000,
      );
      await store.recordWebhook([], [text("a3", ana, 1500)], 12_000); // arrives last, written earlier

      const [conversation] = await store.inbox.listConversations({
        subject: "s",
        contact: ana,
        numberId: null,
        limit: 5,
      });
      // The newest arrival is the last message; the window counts from the latest customer time.
      expect(conversation?.lastInbound.id).toBe("a3");
      expect(conversation?.lastSentAt).toBe(2000);
      expect(conversation?.unread).toBe(3);

      expect(await store.inbox.markInboundRead("a2", 20_000)).toEqual({ readAt: 20_000, unread: 1 });
      const rows = await store.inbox.listInbound({ limit: 10 });
      const readAt = Object.fromEntries(rows.map((r) => [r.id, r.readAt]));
      expect(readAt).toEqual({ a1: 20_000, a2: 20_000, a3: null, "other-number": null, ben: null });
      // Marked again later: the first time stays.
      expect(await store.inbox.markInboundRead("a2", 30_000)).toEqual({ readAt: 20_000, unread: 1 });
      expect(await store.inbox.markInboundRead("nope", 30_000)).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it("migration 8 gives inbound messages stored before it their conversations (unread: nobody marked them)", async () => {
    const path = join(dir, "v7.db");
    const old = new Database(path);
    old.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
    for (const m of MIGRATIONS.filter((m) => m.version <= 7).sort((a, b) => a.version - b.version)) {
      old.exec(m.sql);
      old.prepare("INSERT INTO schema_migrations VALUES (?, 0)").run(m.version);
    }
    const put = old.prepare(
      "INSERT INTO inbound_messages (id, sender, type, text, sent_at, received_at, raw, number_id, processed_at) VALUES (?, ?, 'text', 'x', ?, ?, '{}', ?, 0)",
    );
    put.run("old-1", "+14155550101", 5000, 100, null);
    put.run("old-2", "+14155550101", 4000, 200, null);
    put.run("old-3", "+14155550101", 1000, 50, "n1");
    old.close();

    const store = openSqliteStore(path);
    try {
      const conversations = await store.inbox.listConversations({ subject: "s", limit: 10 });
      expect(
        conversations.map((c) => [c.contact, c.numberId, c.lastInbound.id, c.lastSentAt, c.unread]),
      ).toEqual([
        ["+14155550101", null, "old-2", 5000, 2],
        ["+14155550101", "n1", "old-3", 1000, 1],
      ]);
      const [first] = await store.inbox.listInbound({ limit: 1 });
      expect(first).toMatchObject({ id: "old-2", content: null, readAt: null, profileName: null });
    } finally {
      await store.close();
    }
  });
});
