import type BetterSqlite3 from "better-sqlite3";
import type { CommitBatcher } from "./commit-batcher.js";
import type { MediaRecord, MediaStore, NewMedia } from "./media.js";

// The SQLite side of media (schema: migrations 9 and 13).

interface MediaRow {
  id: string;
  subject: string | null;
  number_id: string | null;
  direction: "in" | "out";
  provider_media_id: string;
  mime_type: string | null;
  size: number | null;
  sha256: string | null;
  message_id: string | null;
  created_at: number;
  source: Buffer | null;
}

function toRecord(row: MediaRow): MediaRecord {
  return {
    id: row.id,
    subject: row.subject,
    numberId: row.number_id,
    direction: row.direction,
    providerMediaId: row.provider_media_id,
    mimeType: row.mime_type,
    size: row.size,
    sha256: row.sha256,
    messageId: row.message_id,
    createdAt: row.created_at,
    source: row.source,
  };
}

export function createSqliteMediaStore(db: BetterSqlite3.Database, batcher: CommitBatcher): MediaStore {
  const insert = (orIgnore: boolean) =>
    db.prepare(
      `INSERT ${orIgnore ? "OR IGNORE " : ""}INTO media (id, subject, number_id, direction, provider_media_id, mime_type, size, sha256, message_id, created_at, source)
       VALUES (@id, @subject, @numberId, @direction, @providerMediaId, @mimeType, @size, @sha256, @messageId, @createdAt, @source)`,
    );
  const s = {
    insert: insert(false),
    insertIfNew: insert(true),
    byId: db.prepare("SELECT * FROM media WHERE id = ? AND direction = 'out'"),
    inbound: db.prepare("SELECT * FROM media WHERE provider_media_id = ? AND direction = 'in'"),
  };
  const params = (m: NewMedia) => ({
    id: m.id,
    subject: m.subject,
    numberId: m.numberId,
    direction: m.direction,
    providerMediaId: m.providerMediaId,
    mimeType: m.mimeType,
    size: m.size,
    sha256: m.sha256,
    messageId: m.messageId,
    createdAt: m.createdAt,
    source: m.source ?? null,
  });
  return {
    recordMedia(media) {
      return batcher.write(() => void s.insert.run(params(media)));
    },
    registerInboundMedia(media) {
      if (media.length === 0) return Promise.resolve();
      return batcher.write(() => {
        for (const m of media) s.insertIfNew.run(params(m));
      });
    },
    async getMedia(id) {
      const row = s.byId.get(id) as MediaRow | undefined;
      return row ? toRecord(row) : undefined;
    },
    async getInboundMedia(providerMediaId) {
      const row = s.inbound.get(providerMediaId) as MediaRow | undefined;
      return row ? toRecord(row) : undefined;
    },
  };
}
