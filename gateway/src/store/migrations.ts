// Numbered, append-only schema migrations. Never edit a migration that has shipped: add the next number.

export interface Migration {
  version: number;
  name: string;
  sql: string;
  /**
   * Text replaced in a table's stored definition, in place (see editTableDefinition in sqlite.ts): for widening a
   * CHECK without rebuilding the table. Applied before `sql`.
   */
  editDefinition?: { table: string; from: string; to: string };
}

const KINDS_BEFORE_11 = "CHECK (kind = 'text' OR kind = 'template' OR kind = 'otp')";

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "outbox, idempotency, webhooks, revocations, otp",
    sql: `
      CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('text', 'template', 'otp')),
        recipient TEXT NOT NULL,
        payload TEXT NOT NULL,
        secret BLOB,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_until INTEGER,
        provider_message_id TEXT,
        error_code TEXT,
        error_message TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX messages_queued ON messages (priority, next_attempt_at) WHERE status = 'queued';
      CREATE INDEX messages_sending ON messages (lease_until) WHERE status = 'sending';
      CREATE UNIQUE INDEX messages_provider_id ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;

      CREATE TABLE idempotency_keys (
        subject TEXT NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status_code INTEGER NOT NULL,
        response TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (subject, key)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

      CREATE TABLE inbound_messages (
        id TEXT PRIMARY KEY,
        sender TEXT NOT NULL,
        type TEXT NOT NULL,
        text TEXT,
        sent_at INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        raw TEXT NOT NULL
      ) STRICT;
      CREATE INDEX inbound_messages_sender ON inbound_messages (sender, received_at);

      CREATE TABLE revoked_tokens (
        jti TEXT PRIMARY KEY,
        revoked_at INTEGER NOT NULL,
        reason TEXT
      ) STRICT;

      CREATE TABLE otp_codes (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        phone TEXT NOT NULL,
        code_hash BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        consumed_at INTEGER,
        message_id TEXT NOT NULL REFERENCES messages (id)
      ) STRICT;
      CREATE INDEX otp_codes_phone ON otp_codes (phone, created_at);
      CREATE INDEX otp_codes_subject_phone ON otp_codes (subject, phone, created_at);
    `,
  },
  {
    // Independent of version 2 (broadcasts): the runner applies every missing version, in any order.
    version: 3,
    name: "automated replies, outbound webhooks",
    sql: `
      CREATE TABLE reply_rules (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        match_type TEXT NOT NULL CHECK (match_type IN ('exact', 'contains', 'regex')),
        pattern TEXT NOT NULL,
        ignore_case INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        reply TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX reply_rules_subject ON reply_rules (subject, priority);
      CREATE INDEX reply_rules_active ON reply_rules (priority, created_at) WHERE enabled = 1;

      CREATE TABLE auto_reply_inbound (
        inbound_id TEXT PRIMARY KEY,
        rule_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        replied_at INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE auto_reply_contacts (
        contact TEXT PRIMARY KEY,
        last_reply_at INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE webhook_subscriptions (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        secret BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX webhook_subscriptions_subject ON webhook_subscriptions (subject);

      CREATE TABLE webhook_events (
        id TEXT PRIMARY KEY,
        dedupe_key TEXT UNIQUE,
        type TEXT NOT NULL,
        subject TEXT,
        body TEXT NOT NULL,
        occurred_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        subscription_id TEXT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
        event_id TEXT NOT NULL REFERENCES webhook_events (id),
        event_type TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_until INTEGER,
        window_started_at INTEGER NOT NULL,
        last_status_code INTEGER,
        last_error TEXT,
        delivered_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
      CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (lease_until) WHERE status = 'delivering';
      CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, id);
    `,
  },
  {
    version: 2,
    name: "broadcasts: recipients, progress counters kept by a trigger, pair-rate lookups",
    sql: `
      CREATE TABLE broadcasts (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        name TEXT,
        template TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'cancelled')),
        total INTEGER NOT NULL,
        cursor INTEGER NOT NULL DEFAULT 0,
        n_sent INTEGER NOT NULL DEFAULT 0,
        n_delivered INTEGER NOT NULL DEFAULT 0,
        n_read INTEGER NOT NULL DEFAULT 0,
        n_failed INTEGER NOT NULL DEFAULT 0,
        n_skipped INTEGER NOT NULL DEFAULT 0,
        n_invalid INTEGER NOT NULL DEFAULT 0,
        n_duplicates INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        completed_at INTEGER
      ) STRICT;
      CREATE INDEX broadcasts_active ON broadcasts (created_at) WHERE status IN ('queued', 'running');

      CREATE TABLE broadcast_recipients (
        broadcast_id TEXT NOT NULL REFERENCES broadcasts (id),
        seq INTEGER NOT NULL,
        recipient TEXT NOT NULL,
        parameters TEXT,
        PRIMARY KEY (broadcast_id, seq)
      ) STRICT, WITHOUT ROWID;

      ALTER TABLE messages ADD COLUMN broadcast_id TEXT;
      CREATE INDEX messages_broadcast ON messages (broadcast_id, status) WHERE broadcast_id IS NOT NULL;
      CREATE INDEX messages_recipient ON messages (recipient);

      CREATE TRIGGER messages_broadcast_progress AFTER UPDATE OF status ON messages
      WHEN NEW.broadcast_id IS NOT NULL AND OLD.status IS NOT NEW.status
      BEGIN
        UPDATE broadcasts SET
          n_sent = n_sent + (NEW.status IN ('sent', 'delivered', 'read')) - (OLD.status IN ('sent', 'delivered', 'read')),
          n_delivered = n_delivered + (NEW.status IN ('delivered', 'read')) - (OLD.status IN ('delivered', 'read')),
          n_read = n_read + (NEW.status = 'read') - (OLD.status = 'read'),
          n_failed = n_failed + (NEW.status = 'failed') - (OLD.status = 'failed'),
          updated_at = NEW.updated_at
        WHERE id = NEW.broadcast_id;
      END;
    `,
  },
  {
    version: 4,
    name: "broadcasts: a send in flight at the cancel that comes back for a retry is dropped, not resent",
    sql: `
      CREATE TRIGGER messages_broadcast_cancelled AFTER UPDATE OF status ON messages
      WHEN NEW.status = 'queued' AND NEW.broadcast_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM broadcasts WHERE id = NEW.broadcast_id AND status = 'cancelled')
      BEGIN
        DELETE FROM messages WHERE id = NEW.id;
        UPDATE broadcasts SET n_skipped = n_skipped + 1 WHERE id = NEW.broadcast_id;
      END;
    `,
  },
  {
    version: 5,
    name: "messages and webhook deliveries: CHECKs without IN lists",
    // SQLite evaluates `x IN (three or more constants)` by building a temporary index at every execution of a
    // statement: a CHECK written that way cost every INSERT and every status UPDATE of these queues a temporary
    // B-tree (~30,000 instructions, measured with callgrind). The same constraints as OR chains cost nothing of
    // the kind. SQLite cannot alter a CHECK, so both tables are rebuilt (rowids kept) with their indexes and
    // triggers; migrate() runs this with foreign keys off, as SQLite's documented table rebuild requires.
    sql: `
      CREATE TABLE messages_rebuilt (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind = 'text' OR kind = 'template' OR kind = 'otp'),
        recipient TEXT NOT NULL,
        payload TEXT NOT NULL,
        secret BLOB,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL CHECK (status = 'queued' OR status = 'sending' OR status = 'sent'
          OR status = 'delivered' OR status = 'read' OR status = 'failed'),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_until INTEGER,
        provider_message_id TEXT,
        error_code TEXT,
        error_message TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        broadcast_id TEXT
      ) STRICT;
      INSERT INTO messages_rebuilt (rowid, id, subject, kind, recipient, payload, secret, priority, status, attempts,
        next_attempt_at, lease_until, provider_message_id, error_code, error_message, created_at, updated_at, broadcast_id)
      SELECT rowid, id, subject, kind, recipient, payload, secret, priority, status, attempts,
        next_attempt_at, lease_until, provider_message_id, error_code, error_message, created_at, updated_at, broadcast_id
      FROM messages;
      DROP TABLE messages;
      ALTER TABLE messages_rebuilt RENAME TO messages;
      CREATE INDEX messages_queued ON messages (priority, next_attempt_at) WHERE status = 'queued';
      CREATE INDEX messages_sending ON messages (lease_until) WHERE status = 'sending';
      CREATE UNIQUE INDEX messages_provider_id ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;
      CREATE INDEX messages_broadcast ON messages (broadcast_id, status) WHERE broadcast_id IS NOT NULL;
      CREATE INDEX messages_recipient ON messages (recipient);
      CREATE TRIGGER messages_broadcast_progress AFTER UPDATE OF status ON messages
      WHEN NEW.broadcast_id IS NOT NULL AND OLD.status IS NOT NEW.status
      BEGIN
        UPDATE broadcasts SET
          n_sent = n_sent + (NEW.status = 'sent' OR NEW.status = 'delivered' OR NEW.status = 'read')
            - (OLD.status = 'sent' OR OLD.status = 'delivered' OR OLD.status = 'read'),
          n_delivered = n_delivered + (NEW.status IN ('delivered', 'read')) - (OLD.status IN ('delivered', 'read')),
          n_read = n_read + (NEW.status = 'read') - (OLD.status = 'read'),
          n_failed = n_failed + (NEW.status = 'failed') - (OLD.status = 'failed'),
          updated_at = NEW.updated_at
        WHERE id = NEW.broadcast_id;
      END;
      CREATE TRIGGER messages_broadcast_cancelled AFTER UPDATE OF status ON messages
      WHEN NEW.status = 'queued' AND NEW.broadcast_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM broadcasts WHERE id = NEW.broadcast_id AND status = 'cancelled')
      BEGIN
        DELETE FROM messages WHERE id = NEW.id;
        UPDATE broadcasts SET n_skipped = n_skipped + 1 WHERE id = NEW.broadcast_id;
      END;

      CREATE TABLE webhook_deliveries_rebuilt (
        id TEXT PRIMARY KEY,
        subscription_id TEXT NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
        event_id TEXT NOT NULL REFERENCES webhook_events (id),
        event_type TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status = 'pending' OR status = 'delivering' OR status = 'delivered'
          OR status = 'failed'),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        lease_until INTEGER,
        window_started_at INTEGER NOT NULL,
        last_status_code INTEGER,
        last_error TEXT,
        delivered_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      INSERT INTO webhook_deliveries_rebuilt (rowid, id, subscription_id, event_id, event_type, status, attempts,
        next_attempt_at, lease_until, window_started_at, last_status_code, last_error, delivered_at, created_at, updated_at)
      SELECT rowid, id, subscription_id, event_id, event_type, status, attempts,
        next_attempt_at, lease_until, window_started_at, last_status_code, last_error, delivered_at, created_at, updated_at
      FROM webhook_deliveries;
      DROP TABLE webhook_deliveries;
      ALTER TABLE webhook_deliveries_rebuilt RENAME TO webhook_deliveries;
      CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
      CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (lease_until) WHERE status = 'delivering';
      CREATE INDEX webhook_deliveries_subscription ON webhook_deliveries (subscription_id, id);
    `,
  },
  {
    version: 6,
    name: "numbers: a registry of sending numbers (cloud or web), sealed session keys, the number of every message",
    // `numbers_generation` changes with every change of `numbers` (triggers), so each process's in-memory copy of
    // the registry (the lookup of `from` on every send) sees another process's change by reading one row.
    // Inbound messages gain `processed_at`: stored first, processed after (events, automated replies), and any
    // left unprocessed by a crash are processed at the next start. Rows from before are already processed.
    sql: `
      CREATE TABLE numbers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        transport TEXT NOT NULL CHECK (transport = 'cloud' OR transport = 'web'),
        status TEXT NOT NULL CHECK (status = 'active' OR status = 'unlinked' OR status = 'linking'
          OR status = 'connected' OR status = 'disconnected'),
        phone TEXT,
        phone_number_id TEXT UNIQUE,
        waba_id TEXT,
        credential BLOB,
        last_connected_at INTEGER,
        status_changed_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE number_session_keys (
        number_id TEXT NOT NULL REFERENCES numbers (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (number_id, key)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE numbers_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL) STRICT;
      INSERT INTO numbers_generation (id, value) VALUES (1, 0);
      CREATE TRIGGER numbers_inserted AFTER INSERT ON numbers
      BEGIN UPDATE numbers_generation SET value = value + 1 WHERE id = 1; END;
      CREATE TRIGGER numbers_updated AFTER UPDATE ON numbers
      BEGIN UPDATE numbers_generation SET value = value + 1 WHERE id = 1; END;
      CREATE TRIGGER numbers_deleted AFTER DELETE ON numbers
      BEGIN UPDATE numbers_generation SET value = value + 1 WHERE id = 1; END;

      CREATE TABLE unrouted_webhooks (
        id INTEGER PRIMARY KEY,
        phone_number_id TEXT NOT NULL,
        body TEXT NOT NULL,
        received_at INTEGER NOT NULL
      ) STRICT;

      ALTER TABLE messages ADD COLUMN number_id TEXT;
      ALTER TABLE broadcasts ADD COLUMN number_id TEXT;
      ALTER TABLE broadcasts ADD COLUMN only_known_contacts INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE inbound_messages ADD COLUMN number_id TEXT;
      ALTER TABLE inbound_messages ADD COLUMN processed_at INTEGER;
      UPDATE inbound_messages SET processed_at = received_at;
      CREATE INDEX inbound_messages_unprocessed ON inbound_messages (received_at) WHERE processed_at IS NULL;
      CREATE INDEX messages_number_queued ON messages (number_id) WHERE status = 'queued' AND number_id IS NOT NULL;
      -- A web number's daily broadcast cap counts its bulk messages of the last 24 hours.
      CREATE INDEX messages_number_bulk ON messages (number_id, created_at) WHERE broadcast_id IS NOT NULL;
    `,
  },
  {
    version: 7,
    name: "automated replies: the match outcome of each inbound text, decided after Meta is answered",
    // A row is written with the inbound message, before the webhook's 200 ('pending', or 'skipped' when the
    // message may not be answered at all); the matcher settles it in the transaction that enqueues the reply.
    // A re-delivery finds the row and costs nothing; a restart resumes the pending ones.
    sql: `
      CREATE TABLE auto_reply_matches (
        inbound_id TEXT PRIMARY KEY,
        outcome TEXT NOT NULL CHECK (outcome = 'pending' OR outcome = 'replied' OR outcome = 'cooldown'
          OR outcome = 'already_replied' OR outcome = 'no_match' OR outcome = 'budget_exhausted'
          OR outcome = 'skipped'),
        rule_id TEXT,
        created_at INTEGER NOT NULL,
        decided_at INTEGER
      ) STRICT;
      CREATE INDEX auto_reply_matches_pending ON auto_reply_matches (created_at) WHERE outcome = 'pending';
      CREATE INDEX auto_reply_matches_created ON auto_reply_matches (created_at);
    `,
  },
  {
    version: 8,
    name: "the inbox: inbound messages' type-specific content, read marks, conversations, listing indexes",
    // Inbound messages keep their content in Meta's shape (`content`, JSON: the type's object and a quoted
    // `context`), the medium's id where there is one (the media routes look a received medium up by it), the
    // sender's profile name and when they were marked read. Listing is newest first by arrival (received_at,
    // then rowid): a row that arrives later is always newer, so a client polling the first page misses nothing.
    // Each listing filter has an index whose order is the listing's order (no sort, whatever the table's size):
    // none → inbound_messages_received; contact → inbound_messages_sender (migration 1); number →
    // inbound_messages_number. Unread counts read the partial index of unread rows only.
    // `inbound_conversations` holds one row per contact and receiving number (number_key '' is the default
    // number), kept by a trigger on insert, so the conversations listing reads `limit` rows instead of grouping
    // every inbound message. Rows from before this version count as unread: nobody marked them read.
    sql: `
      ALTER TABLE inbound_messages ADD COLUMN content TEXT;
      ALTER TABLE inbound_messages ADD COLUMN media_id TEXT;
      ALTER TABLE inbound_messages ADD COLUMN profile_name TEXT;
      ALTER TABLE inbound_messages ADD COLUMN read_at INTEGER;
      CREATE INDEX inbound_messages_received ON inbound_messages (received_at);
      CREATE INDEX inbound_messages_number ON inbound_messages (number_id, received_at);
      CREATE INDEX inbound_messages_unread ON inbound_messages (sender, number_id) WHERE read_at IS NULL;
      CREATE INDEX inbound_messages_media ON inbound_messages (media_id) WHERE media_id IS NOT NULL;

      CREATE TABLE inbound_conversations (
        contact TEXT NOT NULL,
        number_key TEXT NOT NULL,
        last_inbound_id TEXT NOT NULL,
        last_received_at INTEGER NOT NULL,
        last_sent_at INTEGER NOT NULL,
        profile_name TEXT,
        PRIMARY KEY (contact, number_key)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX inbound_conversations_recent ON inbound_conversations (last_received_at, contact, number_key);
      CREATE INDEX inbound_conversations_number ON inbound_conversations (number_key, last_received_at, contact);

      INSERT INTO inbound_conversations (contact, number_key, last_inbound_id, last_received_at, last_sent_at)
      SELECT sender, IFNULL(number_id, ''), id, received_at, max_sent FROM (
        SELECT sender, number_id, id, received_at,
          MAX(sent_at) OVER (PARTITION BY sender, IFNULL(number_id, '')) AS max_sent,
          ROW_NUMBER() OVER (PARTITION BY sender, IFNULL(number_id, '') ORDER BY received_at DESC, rowid DESC) AS n
        FROM inbound_messages)
      WHERE n = 1;

      -- The SET expressions all read the row as it was: the newest arrival names the last message, the latest
      -- sent_at (the customer's clock, as Meta counts the 24-hour window) is kept whatever the arrival order.
      CREATE TRIGGER inbound_messages_conversation AFTER INSERT ON inbound_messages
      BEGIN
        INSERT INTO inbound_conversations (contact, number_key, last_inbound_id, last_received_at, last_sent_at,
          profile_name)
        VALUES (NEW.sender, IFNULL(NEW.number_id, ''), NEW.id, NEW.received_at, NEW.sent_at, NEW.profile_name)
        ON CONFLICT (contact, number_key) DO UPDATE SET
          last_inbound_id = excluded.last_inbound_id,
          last_received_at = excluded.last_received_at,
          last_sent_at = MAX(last_sent_at, excluded.last_sent_at),
          profile_name = IFNULL(excluded.profile_name, profile_name);
      END;
    `,
  },
  {
    version: 11,
    name: "messages: every outbound type of Meta's message object as the kind (image, location, interactive…)",
    // The kind's CHECK widens in place instead of a rebuild: the table keeps whatever columns, indexes and triggers
    // other migrations gave it, and a large outbox migrates in no time. Every existing row satisfies the wider CHECK.
    sql: "",
    editDefinition: {
      table: "messages",
      from: KINDS_BEFORE_11,
      to: `CHECK (kind = 'text' OR kind = 'template' OR kind = 'otp' OR kind = 'image' OR kind = 'video'
          OR kind = 'audio' OR kind = 'document' OR kind = 'sticker' OR kind = 'location' OR kind = 'contacts'
          OR kind = 'interactive' OR kind = 'reaction')`,
    },
  },
  {
    version: 9,
    name: "media: uploads (our id to Meta's media id) and inbound media ids, for GET /v1/media/:id",
    // Inbound media are unique per Meta id (a re-delivered webhook registers nothing twice); the bytes are never
    // stored here, they stream through the gateway both ways.
    sql: `
      CREATE TABLE media (
        id TEXT PRIMARY KEY,
        subject TEXT,
        number_id TEXT,
        direction TEXT NOT NULL CHECK (direction = 'in' OR direction = 'out'),
        provider_media_id TEXT NOT NULL,
        mime_type TEXT,
        size INTEGER,
        sha256 TEXT,
        message_id TEXT,
        created_at INTEGER NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX media_inbound ON media (provider_media_id) WHERE direction = 'in';
    `,
  },
  {
    version: 12,
    name: "messages: no index of queued messages by number",
    // Every send naming `from` inserted an entry into messages_number_queued and every claim removed it: two
    // B-tree changes and two more pages in the WAL per group commit on the hot path, for a query that runs when a
    // number is deleted or stays unlinked too long. That UPDATE now reads the queued messages through
    // messages_queued (only queued rows), which the insert and the claim maintain anyway; the broadcast sender's
    // count of outstanding messages already did.
    sql: `
      DROP INDEX IF EXISTS messages_number_queued;
    `,
  },
  {
    version: 13,
    name: "media: what a WhatsApp Web number needs to fetch an inbound medium again, sealed",
    // Baileys' media key, direct path and URL of a web number's inbound medium (media/web-media.ts), sealed with
    // API_SECRET (AES-GCM, associated data naming the medium): whoever has them and the URL can decrypt the file.
    // NULL for Meta's media and uploads, which Meta serves by id.
    sql: `
      ALTER TABLE media ADD COLUMN source BLOB;
    `,
  },
  {
    version: 14,
    name: "broadcasts: progress counters kept by the store's status writes, not by triggers on every message",
    // Both triggers ran a sub-program for every status change of every message (claim, outcome, status webhook),
    // broadcast or not: about 20,000 instructions a message, a quarter of the outbox's SQLite work (callgrind).
    // store/broadcast-progress.ts does the same arithmetic, only for broadcast messages, in the same transaction.
    sql: `
      DROP TRIGGER IF EXISTS messages_broadcast_progress;
      DROP TRIGGER IF EXISTS messages_broadcast_cancelled;
    `,
  },
];
