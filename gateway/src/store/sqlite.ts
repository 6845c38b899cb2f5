import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import type { InboundContent } from "../inbound/content.js";
import { type MessageStatus, type OutgoingMessage, STATUS_RANK } from "../messages.js";
import { broadcastProgress } from "./broadcast-progress.js";
import { startCheckpointer } from "./checkpointer.js";
import { CommitBatcher } from "./commit-batcher.js";
import { MIGRATIONS } from "./migrations.js";
import { RevocationList } from "./revocation-list.js";
import { createSqliteBroadcastStore } from "./sqlite-broadcasts.js";
import { idempotencyClaimer } from "./sqlite-idempotency.js";
import { createSqliteInboxStore } from "./sqlite-inbox.js";
import { createSqliteMediaStore } from "./sqlite-media.js";
import { createSqliteNumbersStore } from "./sqlite-numbers.js";
import { createSqliteRepliesStore } from "./sqlite-replies.js";
import { createSqliteWebhooksStore } from "./sqlite-webhooks.js";
import type {
  ClaimedMessage,
  EnqueueResult,
  IdempotencyClaim,
  InboundMessage,
  IssueOtpResult,
  MessageRecord,
  NewMessage,
  NewOtp,
  OtpAttempt,
  OtpLimits,
  SealedSecretOwner,
  SendError,
  StatusUpdate,
  Store,
  WebhookBatchResult,
} from "./store.js";

// SQLite in WAL mode, every statement prepared with parameters (no SQL built from input).
//
// "An accepted message is never lost": a route answers 202 only after the COMMIT that holds the message. In WAL
// mode that COMMIT has written the log into the kernel before returning, so killing the process at any moment
// loses nothing (the crash test SIGKILLs a gateway right after its 202s). A power cut or kernel crash is covered
// by default too (DATABASE_SYNC=full): every write that answers a client also waits for a sync of the WAL, done
// by the commit batcher off the event loop and shared by everything accepted during the previous sync (group
// commit, commit-batcher.ts). The connection itself runs synchronous=NORMAL, so SQLite does not sync on each
// COMMIT on the event loop. DATABASE_SYNC=normal (opt-in) skips the batcher's sync: then only the checkpointer
// (checkpointer.ts, every second; SQLite syncs the WAL before each checkpoint) bounds what a power cut can take,
// to about the last second of accepted messages.

interface MessageRow {
  id: string;
  subject: string;
  kind: MessageRecord["kind"];
  payload: string;
  secret: Buffer | null;
  priority: number;
  status: MessageStatus;
  attempts: number;
  next_attempt_at: number;
  provider_message_id: string | null;
  number_id: string | null;
  broadcast_id: string | null;
  error_code: string | null;
  error_message: string | null;
  created_at: number;
  updated_at: number;
}

const HOUR_MS = 3_600_000;
const EXPIRED_LEASE_CHECK_MS = 1000;

/**
 * The outbox's claims and outcomes commit without waiting for the fsync. A process kill loses none of them; a
 * power cut may lose the last few, which at worst puts a message back in doubt (then settled by Meta's status
 * webhook, or resent): never a lost message. What answers a client waits for the fsync.
 */
const OUTBOX_BOOKKEEPING = { durable: false } as const;

function toRecord(row: MessageRow): MessageRecord {
  return {
    id: row.id,
    subject: row.subject,
    kind: row.kind,
    message: JSON.parse(row.payload) as OutgoingMessage,
    secret: row.secret,
    priority: row.priority,
    status: row.status,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    providerMessageId: row.provider_message_id,
    numberId: row.number_id,
    errorCode: row.error_code,
    errorMessage: row.error_message,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/**
 * SQLite's documented way to change a constraint without rebuilding the table ("Making Other Kinds Of Table Schema
 * Changes", lang_altertable.html): the table's stored CREATE statement is edited and the schema version bumped,
 * so every connection, here and in other processes, reloads the schema. Safe only when every existing row
 * satisfies the new definition (a widened CHECK does). Refuses, and the migration rolls back, when the
 * definition does not hold the expected text.
 */
function editTableDefinition(
  db: BetterSqlite3.Database,
  edit: { table: string; from: string; to: string },
): void {
  const version = db.pragma("schema_version", { simple: true }) as number;
  db.pragma("writable_schema = ON");
  let changed: number;
  try {
    changed = db
      .prepare(
        "UPDATE sqlite_schema SET sql = replace(sql, ?, ?) WHERE type = 'table' AND name = ? AND instr(sql, ?) > 0",
      )
      .run(edit.from, edit.to, edit.table, edit.from).changes;
    db.pragma(`schema_version = ${version + 1}`);
  } finally {
    db.pragma("writable_schema = OFF");
  }
  if (changed !== 1) throw new Error(`database: the definition of ${edit.table} is not the one expected`);
}

/**
 * Applies the migrations not yet applied, each in its own transaction. Foreign keys are off meanwhile (a table
 * rebuild drops and renames a table others refer to, as SQLite's documented procedure does) and checked after.
 */
function migrate(db: BetterSqlite3.Database): void {
  db.pragma("foreign_keys = OFF");
  db.exec(
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
  );
  const applied = new Set(
    (db.prepare("SELECT version FROM schema_migrations").all() as Array<{ version: number }>).map(
      (r) => r.version,
    ),
  );
  const record = db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)");
  let migrated = false;
  for (const migration of MIGRATIONS) {
    if (applied.has(migration.version)) continue;
    migrated = true;
    // better-sqlite3's defensive mode forbids writing sqlite_schema; lifted for this migration only.
    if (migration.editDefinition) db.unsafeMode(true);
    try {
      db.transaction(() => {
        if (migration.editDefinition) editTableDefinition(db, migration.editDefinition);
        db.exec(migration.sql);
        record.run(migration.version, Date.now());
      })();
    } finally {
      if (migration.editDefinition) db.unsafeMode(false);
    }
  }
  const broken = migrated ? (db.pragma("foreign_key_check") as unknown[]) : [];
  if (broken.length > 0)
    throw new Error(`database: ${broken.length} rows break a foreign key after migrating`);
  db.pragma("foreign_keys = ON");
}

export interface SqliteStoreOptions {
  /**
   * true (default): every write that answers a client waits for the WAL's sync — survives a power cut.
   * false: it waits for COMMIT only — survives a killed process; a power cut may lose about the last second
   * (the checkpointer syncs the WAL at every checkpoint).
   */
  fsync?: boolean;
}

export function openSqliteStore(path: string, options: SqliteStoreOptions = {}): Store {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const db = new BetterSqlite3(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("busy_timeout = 5000");
  migrate(db);
  const batcher = new CommitBatcher(
    db,
    path === ":memory:" || options.fsync === false ? undefined : `${path}-wal`,
  );
  const progress = broadcastProgress(db);
  // Checkpoints run on a worker thread, which holds the batcher's commits briefly to keep the WAL from growing
  // (see checkpointer.ts); SQLite still checkpoints when the last connection closes.
  const checkpointer = path === ":memory:" ? undefined : startCheckpointer(path, batcher);
  if (checkpointer) db.pragma("wal_autocheckpoint = 0");

  const claimIdempotency = idempotencyClaimer(db);
  const revocations = new RevocationList(db);
  let lastExpiredCheck = Number.NEGATIVE_INFINITY;
  const s = {
    insertMessage: db.prepare(
      `INSERT INTO messages (id, subject, kind, recipient, payload, secret, priority, status, next_attempt_at, created_at, updated_at, number_id)
       VALUES (@id, @subject, @kind, @recipient, @payload, @secret, @priority, 'queued', @createdAt, @createdAt, @createdAt, @numberId)`,
    ),
    pruneIdempotency: db.prepare("DELETE FROM idempotency_keys WHERE created_at < ?"),
    getMessage: db.prepare("SELECT * FROM messages WHERE id = ?"),
    // A claim takes the due rows, lowest priority number first, and makes them `sending` with a lease. It reads
    // `limit` rows of the partial index in its own order (no sort) and picks them by rowid, which the index holds.
    claimQueued: db.prepare(
      `UPDATE messages SET status = 'sending', attempts = attempts + 1, lease_until = @leaseUntil, updated_at = @now
       WHERE rowid IN (
         SELECT rowid FROM messages WHERE status = 'queued' AND next_attempt_at <= @now
         ORDER BY priority, next_attempt_at LIMIT @limit)
       RETURNING id, payload, secret, priority, attempts, next_attempt_at, number_id, broadcast_id`,
    ),
    // A `sending` row whose lease ended (its sender died or never heard back) is claimed again. That is rare, so
    // it is looked for at most once a second (EXPIRED_LEASE_CHECK_MS), not in every claim.
    claimExpired: db.prepare(
      `UPDATE messages SET attempts = attempts + 1, lease_until = @leaseUntil, updated_at = @now
       WHERE rowid IN (
         SELECT rowid FROM messages WHERE status = 'sending' AND lease_until <= @now
         ORDER BY lease_until LIMIT @limit)
       RETURNING id, payload, secret, priority, attempts, next_attempt_at, number_id, broadcast_id`,
    ),
    markSent: db.prepare(
      `UPDATE messages SET status = 'sent', secret = NULL, provider_message_id = COALESCE(@providerId, provider_message_id),
         lease_until = NULL, error_code = NULL, error_message = NULL, updated_at = @now
       WHERE id = @id AND status = 'sending'`,
    ),
    markRetry: db.prepare(
      `UPDATE messages SET status = 'queued', next_attempt_at = @nextAt, lease_until = NULL, error_code = @code,
         error_message = @message, updated_at = @now
       WHERE id = @id AND status = 'sending'`,
    ),
    markFailed: db.prepare(
      `UPDATE messages SET status = 'failed', secret = NULL, lease_until = NULL, error_code = @code, error_message = @message,
         updated_at = @now
       WHERE id = @id AND status = 'sending'`,
    ),
    byProviderId: db.prepare(
      "SELECT id, status, provider_message_id, broadcast_id FROM messages WHERE provider_message_id = ?",
    ),
    byId: db.prepare("SELECT id, status, provider_message_id, broadcast_id FROM messages WHERE id = ?"),
    applyStatus: db.prepare(
      `UPDATE messages SET status = @status, secret = NULL, provider_message_id = COALESCE(provider_message_id, @providerId),
         lease_until = NULL, error_code = COALESCE(@code, error_code), error_message = COALESCE(@message, error_message),
         updated_at = @now
       WHERE id = @id`,
    ),
    insertInbound: db.prepare(
      `INSERT OR IGNORE INTO inbound_messages (id, sender, type, text, sent_at, received_at, raw, number_id,
         content, media_id, profile_name)
       VALUES (@id, @from, @type, @text, @sentAt, @now, @raw, @numberId, @content, @mediaId, @profileName)`,
    ),
    unprocessedInbound: db.prepare(
      `SELECT id, sender, type, text, sent_at, raw, number_id, content, media_id, profile_name FROM inbound_messages
       WHERE processed_at IS NULL ORDER BY received_at, rowid LIMIT ?`,
    ),
    markInboundProcessed: db.prepare(
      "UPDATE inbound_messages SET processed_at = ? WHERE id = ? AND processed_at IS NULL",
    ),
    sealedNumberCredentials: db.prepare("SELECT id, credential FROM numbers WHERE credential IS NOT NULL"),
    resealNumberCredential: db.prepare("UPDATE numbers SET credential = ? WHERE id = ?"),
    sealedSessionKeys: db.prepare("SELECT number_id, key, value FROM number_session_keys"),
    sealedMediaSources: db.prepare("SELECT id, source FROM media WHERE source IS NOT NULL"),
    resealMediaSource: db.prepare("UPDATE media SET source = ? WHERE id = ?"),
    resealSessionKey: db.prepare("UPDATE number_session_keys SET value = ? WHERE number_id = ? AND key = ?"),
    sealedMessages: db.prepare("SELECT id, secret FROM messages WHERE secret IS NOT NULL"),
    resealMessage: db.prepare("UPDATE messages SET secret = ? WHERE id = ?"),
    sealedSubscriptions: db.prepare("SELECT id, secret FROM webhook_subscriptions"),
    resealSubscription: db.prepare("UPDATE webhook_subscriptions SET secret = ? WHERE id = ?"),
    revoke: db.prepare("INSERT OR IGNORE INTO revoked_tokens (jti, revoked_at, reason) VALUES (?, ?, ?)"),
    lastOtpOfSubject: db
      .prepare("SELECT MAX(created_at) FROM otp_codes WHERE subject = ? AND phone = ?")
      .pluck(),
    otpCountOfSubjectSince: db
      .prepare(
        "SELECT COUNT(*), MIN(created_at) FROM otp_codes WHERE subject = ? AND phone = ? AND created_at > ?",
      )
      .raw(),
    otpCountSince: db.prepare("SELECT COUNT(*) FROM otp_codes WHERE phone = ? AND created_at > ?").pluck(),
    retireOtps: db.prepare(
      "UPDATE otp_codes SET expires_at = @now WHERE subject = @subject AND phone = @phone AND consumed_at IS NULL AND expires_at > @now",
    ),
    insertOtp: db.prepare(
      `INSERT INTO otp_codes (id, subject, phone, code_hash, created_at, expires_at, max_attempts, message_id)
       VALUES (@id, @subject, @phone, @codeHash, @createdAt, @expiresAt, @maxAttempts, @messageId)`,
    ),
    spendOtp: db.prepare(
      `UPDATE otp_codes SET attempts = attempts + 1
       WHERE id = (SELECT id FROM otp_codes WHERE subject = @subject AND phone = @phone
                   ORDER BY created_at DESC, rowid DESC LIMIT 1)
         AND consumed_at IS NULL AND expires_at > @now AND attempts < max_attempts
       RETURNING id, code_hash`,
    ),
    consumeOtp: db.prepare("UPDATE otp_codes SET consumed_at = ? WHERE id = ? AND consumed_at IS NULL"),
  };

  function insertMessage(m: NewMessage): void {
    s.insertMessage.run({
      id: m.id,
      subject: m.subject,
      kind: m.kind,
      recipient: m.message.to,
      payload: JSON.stringify(m.message),
      secret: m.secret ?? null,
      priority: m.priority,
      createdAt: m.createdAt,
      numberId: m.numberId ?? null,
    });
  }

  function applyStatus(update: StatusUpdate, now: number): boolean {
    type Row = {
      id: string;
      status: MessageStatus;
      provider_message_id: string | null;
      broadcast_id: string | null;
    };
    let row = s.byProviderId.get(update.providerMessageId) as Row | undefined;
    if (!row && update.ourMessageId) {
      const candidate = s.byId.get(update.ourMessageId) as Row | undefined;
      // The echoed id only counts when it does not contradict a provider id we already hold.
      if (
        candidate &&
        (candidate.provider_message_id ?? update.providerMessageId) === update.providerMessageId
      ) {
        row = candidate;
      }
    }
    if (!row || STATUS_RANK[update.status] <= STATUS_RANK[row.status]) return false;
    s.applyStatus.run({
      id: row.id,
      status: update.status,
      providerId: update.providerMessageId,
      code: update.error?.code ?? null,
      message: update.error?.message ?? null,
      now,
    });
    if (row.broadcast_id) progress.moved(row.broadcast_id, row.id, row.status, update.status, now);
    return true;
  }

  const store: Store = {
    broadcasts: createSqliteBroadcastStore(db, batcher),
    numbers: createSqliteNumbersStore(db, batcher, progress),
    inbox: createSqliteInboxStore(db, batcher),
    media: createSqliteMediaStore(db, batcher),
    ...createSqliteRepliesStore(db, batcher, insertMessage),
    ...createSqliteWebhooksStore(db, batcher),
    enqueueMessage(message: NewMessage, idempotency?: IdempotencyClaim): Promise<EnqueueResult> {
      return batcher.write((): EnqueueResult => {
        const claimed = claimIdempotency(idempotency, message.createdAt);
        if (claimed) return claimed;
        insertMessage(message);
        return { kind: "created" };
      });
    },

    async getMessage(id) {
      const row = s.getMessage.get(id) as MessageRow | undefined;
      return row ? toRecord(row) : undefined;
    },

    claimDueMessages(now, limit, leaseUntil) {
      return batcher.write(() => {
        type ClaimedRow = Pick<
          MessageRow,
          | "id"
          | "payload"
          | "secret"
          | "priority"
          | "attempts"
          | "next_attempt_at"
          | "number_id"
          | "broadcast_id"
        >;
        const rows = s.claimQueued.all({ now, limit, leaseUntil }) as ClaimedRow[];
        if (
          rows.length < limit &&
          (now - lastExpiredCheck >= EXPIRED_LEASE_CHECK_MS || now < lastExpiredCheck)
        ) {
          lastExpiredCheck = now;
          rows.push(...(s.claimExpired.all({ now, limit: limit - rows.length, leaseUntil }) as ClaimedRow[]));
        }
        // RETURNING gives rows in no particular order: send in claim order.
        return rows
          .map(
            (row): ClaimedMessage => ({
              id: row.id,
              message: JSON.parse(row.payload) as OutgoingMessage,
              secret: row.secret,
              priority: row.priority,
              attempts: row.attempts,
              nextAttemptAt: row.next_attempt_at,
              numberId: row.number_id,
              broadcastId: row.broadcast_id,
            }),
          )
          .sort((a, b) => a.priority - b.priority || a.nextAttemptAt - b.nextAttemptAt);
      }, OUTBOX_BOOKKEEPING);
    },

    // `WHERE status = 'sending'`: an outcome moves only the claimed row it was claimed as; a status webhook that
    // settled the row meanwhile wins, and then nothing moves here (changes = 0).
    markSent({ id, broadcastId }, providerId, now) {
      return batcher.write(() => {
        if (s.markSent.run({ id, providerId, now }).changes > 0 && broadcastId)
          progress.moved(broadcastId, id, "sending", "sent", now);
      }, OUTBOX_BOOKKEEPING);
    },
    markRetry({ id, broadcastId }, nextAt, error: SendError, now) {
      return batcher.write(() => {
        const { changes } = s.markRetry.run({ id, nextAt, code: error.code, message: error.message, now });
        if (changes > 0 && broadcastId) progress.moved(broadcastId, id, "sending", "queued", now);
      }, OUTBOX_BOOKKEEPING);
    },
    markFailed({ id, broadcastId }, error: SendError, now) {
      return batcher.write(() => {
        const { changes } = s.markFailed.run({ id, code: error.code, message: error.message, now });
        if (changes > 0 && broadcastId) progress.moved(broadcastId, id, "sending", "failed", now);
      }, OUTBOX_BOOKKEEPING);
    },

    recordWebhook(statuses: StatusUpdate[], inbound: InboundMessage[], now: number) {
      return batcher.write((): WebhookBatchResult => {
        const result = { statusesApplied: 0, inboundStored: 0, duplicates: 0 };
        for (const update of statuses) {
          if (applyStatus(update, now)) result.statusesApplied++;
        }
        for (const m of inbound) {
          const info = s.insertInbound.run({
            id: m.id,
            from: m.from,
            type: m.type,
            text: m.text,
            sentAt: m.sentAt,
            now,
            raw: JSON.stringify(m.raw),
            numberId: m.numberId ?? null,
            content: m.content ? JSON.stringify(m.content) : null,
            mediaId: m.mediaId ?? null,
            profileName: m.profileName ?? null,
          });
          if (info.changes === 1) result.inboundStored++;
          else result.duplicates++;
        }
        return result;
      });
    },

    async unprocessedInbound(limit) {
      type Row = {
        id: string;
        sender: string;
        type: string;
        text: string | null;
        sent_at: number;
        raw: string;
        number_id: string | null;
        content: string | null;
        media_id: string | null;
        profile_name: string | null;
      };
      // Everything the pipeline hands on: a recovered message's event carries the same content as a live one's.
      return (s.unprocessedInbound.all(limit) as Row[]).map(
        (row): InboundMessage => ({
          id: row.id,
          from: row.sender,
          type: row.type,
          text: row.text,
          sentAt: row.sent_at,
          raw: JSON.parse(row.raw) as unknown,
          ...(row.number_id ? { numberId: row.number_id } : {}),
          content: row.content === null ? null : (JSON.parse(row.content) as InboundContent),
          mediaId: row.media_id,
          profileName: row.profile_name,
        }),
      );
    },
    markInboundProcessed(ids, now) {
      return batcher.write(() => {
        for (const id of ids) s.markInboundProcessed.run(now, id);
      });
    },

    resealSecrets(reseal) {
      return batcher.write(() => {
        // Counted here, not by the caller: a batched write may run twice.
        const counts = { resealed: 0, unopenable: 0 };
        const replace = (owner: SealedSecretOwner, sealed: Buffer, update: BetterSqlite3.Statement) => {
          let next: Buffer | undefined;
          try {
            next = reseal(owner, sealed);
          } catch {
            counts.unopenable++;
            return;
          }
          if (next) counts.resealed += update.run(next, owner.id).changes;
        };
        for (const { id, secret } of s.sealedMessages.all() as Array<{ id: string; secret: Buffer }>)
          replace({ kind: "message", id }, secret, s.resealMessage);
        for (const { id, secret } of s.sealedSubscriptions.all() as Array<{ id: string; secret: Buffer }>)
          replace({ kind: "webhook_subscription", id }, secret, s.resealSubscription);
        for (const { id, credential } of s.sealedNumberCredentials.all() as Array<{
          id: string;
          credential: Buffer;
        }>)
          replace({ kind: "number_credential", id }, credential, s.resealNumberCredential);
        for (const { id, source } of s.sealedMediaSources.all() as Array<{ id: string; source: Buffer }>)
          replace({ kind: "media_source", id }, source, s.resealMediaSource);
        type SessionRow = { number_id: string; key: string; value: Buffer };
        for (const row of s.sealedSessionKeys.all() as SessionRow[]) {
          let next: Buffer | undefined;
          try {
            next = reseal({ kind: "number_session", id: row.number_id, key: row.key }, row.value);
          } catch {
            counts.unopenable++;
            continue;
          }
          if (next) counts.resealed += s.resealSessionKey.run(next, row.number_id, row.key).changes;
        }
        return counts;
      });
    },

    async revokeToken(jti, now, reason) {
      await batcher.write(() => void s.revoke.run(jti, now, reason ?? null));
      revocations.add(jti);
    },
    async isTokenRevoked(jti) {
      return revocations.has(jti);
    },

    issueOtp(otp: NewOtp, limits: OtpLimits) {
      return batcher.write((): IssueOtpResult => {
        // The subject's own limits first: what they answer is derived from the subject's own codes only.
        const last = s.lastOtpOfSubject.get(otp.subject, otp.phone) as number | null;
        if (last !== null && otp.createdAt - last < limits.cooldownMs) {
          return { kind: "cooldown", retryAfterMs: limits.cooldownMs - (otp.createdAt - last) };
        }
        const since = otp.createdAt - HOUR_MS;
        const [count, oldest] = s.otpCountOfSubjectSince.get(otp.subject, otp.phone, since) as [
          number,
          number | null,
        ];
        if (count >= limits.hourlyLimit) {
          return { kind: "hourly_limit", retryAfterMs: (oldest ?? otp.createdAt) + HOUR_MS - otp.createdAt };
        }
        if ((s.otpCountSince.get(otp.phone, since) as number) >= limits.numberHourlyLimit) {
          return { kind: "number_limit" };
        }
        s.retireOtps.run({ subject: otp.subject, phone: otp.phone, now: otp.createdAt });
        insertMessage(otp.message);
        s.insertOtp.run({
          id: otp.id,
          subject: otp.subject,
          phone: otp.phone,
          codeHash: otp.codeHash,
          createdAt: otp.createdAt,
          expiresAt: otp.expiresAt,
          maxAttempts: otp.maxAttempts,
          messageId: otp.message.id,
        });
        return { kind: "created" };
      });
    },

    spendOtpAttempt(subject, phone, now) {
      return batcher.write((): OtpAttempt | undefined => {
        const row = s.spendOtp.get({ subject, phone, now }) as { id: string; code_hash: Buffer } | undefined;
        return row ? { id: row.id, codeHash: row.code_hash } : undefined;
      });
    },
    consumeOtp(id, now) {
      return batcher.write(() => s.consumeOtp.run(now, id).changes === 1);
    },

    pruneIdempotencyKeys(before) {
      return batcher.write(() => s.pruneIdempotency.run(before).changes);
    },
    async ping() {
      db.prepare("SELECT 1").get();
    },
    async close() {
      if (!db.open) return;
      batcher.close();
      await checkpointer?.stop();
      db.close();
    },
  };
  return store;
}
