import type BetterSqlite3 from "better-sqlite3";
import type { BroadcastProgress } from "./broadcast-progress.js";
import type { CommitBatcher } from "./commit-batcher.js";
import type {
  NewNumber,
  NumberPatch,
  NumberRecord,
  NumberStatusChange,
  NumbersStore,
  NumberWriteResult,
} from "./numbers.js";
import { OtherCommitsWatch } from "./other-commits.js";
import type { SendError } from "./store.js";

// The SQLite side of the numbers registry (tables of migration 6). The main store composes it, sharing its
// connection and commit batcher.

interface NumberRow {
  id: string;
  name: string;
  transport: NumberRecord["transport"];
  status: NumberRecord["status"];
  phone: string | null;
  phone_number_id: string | null;
  waba_id: string | null;
  credential: Buffer | null;
  last_connected_at: number | null;
  status_changed_at: number;
  created_at: number;
  updated_at: number;
}

function toRecord(row: NumberRow): NumberRecord {
  return {
    id: row.id,
    name: row.name,
    transport: row.transport,
    status: row.status,
    phone: row.phone,
    phoneNumberId: row.phone_number_id,
    wabaId: row.waba_id,
    credential: row.credential,
    lastConnectedAt: row.last_connected_at,
    statusChangedAt: row.status_changed_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/**
 * The registry in memory. Writes through this connection mark it stale; writes by another process show in
 * `PRAGMA data_version` (read at most once per turn of the event loop, like the revocation list), and only a
 * change of `numbers_generation` (bumped by triggers on `numbers`) reloads the few rows of the registry.
 */
class NumberCache {
  private byId = new Map<string, NumberRecord>();
  private byPhoneNumberId = new Map<string, NumberRecord>();
  private stale = true;
  private seenGeneration: number | undefined;
  private readonly otherCommits: OtherCommitsWatch;
  private readonly generation: BetterSqlite3.Statement;
  private readonly all: BetterSqlite3.Statement;

  constructor(db: BetterSqlite3.Database) {
    this.otherCommits = new OtherCommitsWatch(db);
    this.generation = db.prepare("SELECT value FROM numbers_generation WHERE id = 1").pluck();
    this.all = db.prepare("SELECT * FROM numbers ORDER BY created_at, id");
  }

  invalidate(): void {
    this.stale = true;
  }

  get(id: string): NumberRecord | undefined {
    this.refresh();
    return this.byId.get(id);
  }

  getByPhoneNumberId(phoneNumberId: string): NumberRecord | undefined {
    this.refresh();
    return this.byPhoneNumberId.get(phoneNumberId);
  }

  private refresh(): void {
    if (!this.stale) {
      if (!this.otherCommits.changed()) return;
      if (this.generation.get() === this.seenGeneration) return;
    }
    this.reload();
  }

  private reload(): void {
    this.otherCommits.markSeen();
    this.seenGeneration = this.generation.get() as number;
    const byId = new Map<string, NumberRecord>();
    const byPhoneNumberId = new Map<string, NumberRecord>();
    for (const row of this.all.all() as NumberRow[]) {
      const record = toRecord(row);
      byId.set(record.id, record);
      if (record.phoneNumberId) byPhoneNumberId.set(record.phoneNumberId, record);
    }
    this.byId = byId;
    this.byPhoneNumberId = byPhoneNumberId;
    this.stale = false;
  }
}

function uniqueConflict(error: unknown): "name" | "cloud.phone_number_id" | undefined {
  const message = (error as { code?: string; message?: string }) ?? {};
  if (message.code !== "SQLITE_CONSTRAINT_UNIQUE") return undefined;
  return message.message?.includes("numbers.phone_number_id") ? "cloud.phone_number_id" : "name";
}

export function createSqliteNumbersStore(
  db: BetterSqlite3.Database,
  batcher: CommitBatcher,
  progress: BroadcastProgress,
): NumbersStore {
  const cache = new NumberCache(db);
  const s = {
    insert: db.prepare(
      `INSERT INTO numbers (id, name, transport, status, phone, phone_number_id, waba_id, credential,
         status_changed_at, created_at, updated_at)
       VALUES (@id, @name, @transport, @status, @phone, @phoneNumberId, @wabaId, @credential, @createdAt, @createdAt,
         @createdAt)`,
    ),
    get: db.prepare("SELECT * FROM numbers WHERE id = ?"),
    list: db.prepare("SELECT * FROM numbers ORDER BY created_at, id"),
    update: db.prepare(
      `UPDATE numbers SET name = @name, phone = @phone, phone_number_id = @phoneNumberId, waba_id = @wabaId,
         credential = @credential, updated_at = @now
       WHERE id = @id`,
    ),
    setStatus: db.prepare(
      `UPDATE numbers SET status = @status, phone = COALESCE(@phone, phone),
         last_connected_at = COALESCE(@connectedAt, last_connected_at),
         status_changed_at = CASE WHEN status = @status THEN status_changed_at ELSE @now END, updated_at = @now
       WHERE id = @id`,
    ),
    delete: db.prepare("DELETE FROM numbers WHERE id = ?"),
    failQueued: db.prepare(
      `UPDATE messages SET status = 'failed', secret = NULL, error_code = @code, error_message = @message,
         updated_at = @now
       WHERE number_id = @id AND status = 'queued'`,
    ),
    queuedPerBroadcast: db.prepare(
      `SELECT broadcast_id, COUNT(*) AS n FROM messages
       WHERE number_id = ? AND status = 'queued' AND broadcast_id IS NOT NULL GROUP BY broadcast_id`,
    ),
    readKey: db.prepare("SELECT value FROM number_session_keys WHERE number_id = ? AND key = ?").pluck(),
    writeKey: db.prepare(
      `INSERT INTO number_session_keys (number_id, key, value) VALUES (?, ?, ?)
       ON CONFLICT (number_id, key) DO UPDATE SET value = excluded.value`,
    ),
    removeKey: db.prepare("DELETE FROM number_session_keys WHERE number_id = ? AND key = ?"),
    wipe: db.prepare("DELETE FROM number_session_keys WHERE number_id = ?"),
    unrouted: db.prepare(
      "INSERT INTO unrouted_webhooks (phone_number_id, body, received_at) VALUES (?, ?, ?)",
    ),
  };

  async function written<T>(work: () => T): Promise<T> {
    try {
      return await batcher.write(work);
    } finally {
      cache.invalidate();
    }
  }

  /** Fails a number's queued messages; their broadcasts count them failed. Returns how many failed. */
  function failQueued(id: string, error: SendError, now: number): number {
    const perBroadcast = s.queuedPerBroadcast.all(id) as Array<{ broadcast_id: string; n: number }>;
    const { changes } = s.failQueued.run({ id, code: error.code, message: error.message, now });
    for (const { broadcast_id, n } of perBroadcast) progress.failedQueued(broadcast_id, n, now);
    return changes;
  }

  return {
    async createNumber(n: NewNumber) {
      try {
        return await written((): NumberWriteResult => {
          s.insert.run({
            id: n.id,
            name: n.name,
            transport: n.transport,
            status: n.status,
            phone: n.phone ?? null,
            phoneNumberId: n.phoneNumberId ?? null,
            wabaId: n.wabaId ?? null,
            credential: n.credential ?? null,
            createdAt: n.createdAt,
          });
          return { kind: "ok", number: toRecord(s.get.get(n.id) as NumberRow) };
        });
      } catch (error) {
        const field = uniqueConflict(error);
        if (field) return { kind: "conflict", field };
        throw error;
      }
    },
    async listNumbers() {
      return (s.list.all() as NumberRow[]).map(toRecord);
    },
    async getNumber(id) {
      const row = s.get.get(id) as NumberRow | undefined;
      return row ? toRecord(row) : undefined;
    },
    cachedNumber: (id) => cache.get(id),
    cachedNumberByPhoneNumberId: (phoneNumberId) => cache.getByPhoneNumberId(phoneNumberId),
    async updateNumber(id, patch: NumberPatch, now) {
      try {
        return await written((): NumberWriteResult => {
          const row = s.get.get(id) as NumberRow | undefined;
          if (!row) return { kind: "not_found" };
          s.update.run({
            id,
            name: patch.name ?? row.name,
            phone: patch.phone === undefined ? row.phone : patch.phone,
            phoneNumberId: patch.phoneNumberId ?? row.phone_number_id,
            wabaId: patch.wabaId === undefined ? row.waba_id : patch.wabaId,
            credential: patch.credential ?? row.credential,
            now,
          });
          return { kind: "ok", number: toRecord(s.get.get(id) as NumberRow) };
        });
      } catch (error) {
        const field = uniqueConflict(error);
        if (field) return { kind: "conflict", field };
        throw error;
      }
    },
    setNumberStatus(id, change: NumberStatusChange, now) {
      return written(() => {
        s.setStatus.run({
          id,
          status: change.status,
          phone: change.phone ?? null,
          connectedAt: change.connectedAt ?? null,
          now,
        });
        const row = s.get.get(id) as NumberRow | undefined;
        return row ? toRecord(row) : undefined;
      });
    },
    deleteNumber(id, error: SendError, now) {
      return written(() => {
        if (!s.get.get(id)) return false;
        failQueued(id, error, now);
        s.wipe.run(id);
        s.delete.run(id);
        return true;
      });
    },
    async readSessionKeys(numberId, keys) {
      const found = new Map<string, Buffer>();
      for (const key of keys) {
        const value = s.readKey.get(numberId, key) as Buffer | undefined;
        if (value) found.set(key, value);
      }
      return found;
    },
    writeSessionKeys(numberId, entries) {
      return batcher.write(() => {
        for (const [key, value] of entries) {
          if (value) s.writeKey.run(numberId, key, value);
          else s.removeKey.run(numberId, key);
        }
      });
    },
    wipeSession(numberId) {
      return batcher.write(() => void s.wipe.run(numberId));
    },
    failQueuedMessages(numberId, error: SendError, now) {
      return batcher.write(() => failQueued(numberId, error, now));
    },
    recordUnroutedWebhook(phoneNumberId, body, now) {
      return batcher.write(() => void s.unrouted.run(phoneNumberId, body, now));
    },
  };
}
