import { closeSync, fdatasync, fdatasyncSync, openSync } from "node:fs";
import type { Database } from "better-sqlite3";

// Group commit with the durability of synchronous=FULL, without blocking the event loop.
//
// Writes that arrive in the same turn of the event loop run in one transaction. A write that throws must not undo
// the others, yet a savepoint around every write doubles the cost of a small insert (SAVEPOINT and RELEASE are
// statements too): so the batch first runs plainly, and only if one write throws is it rolled back and run
// again with a savepoint per write. A write's `run` therefore only touches the database and may run twice.
//
// The connection runs with synchronous=NORMAL, so COMMIT only writes the WAL; this class then syncs the WAL file
// itself (fdatasync, as SQLite does on Linux: the WAL is rewritten in place, so its size rarely changes and the
// file system need not commit its journal for the mtime), on libuv's thread pool, and resolves the callers'
// promises only after that sync returned. So a caller (a route about to answer 202) hears "done" only once its
// rows are on disk, exactly as with FULL, while the event loop keeps parsing requests during the sync.
//
// Classic group commit: while one sync runs, nothing is committed; everything accepted meanwhile waits and then
// goes into one COMMIT and one sync. Under load that makes a commit and a sync per group, not per turn of the
// event loop: fewer WAL pages written (a group's rows share their table and index pages) and fewer syncs per
// message (measured: README, `npm run bench:gateway`). A write waits for at most the end of the sync in
// flight plus its own. (SQLite itself syncs the WAL before a checkpoint and the database file after it.) A
// process kill loses nothing committed even before the sync; the sync is what covers a power cut or a kernel
// crash.

/**
 * How long bookkeeping (`durable: false`) may wait for company. A commit writes every page it changed to the
 * WAL, and a message's insert, claim and outcome change mostly the same pages: when requests arrive one at a
 * time, three commits per message wrote three times the WAL. Waiting a little lets bookkeeping join the next
 * client write's commit instead (or each other's); under load it joins the commit of the same turn anyway.
 */
const BOOKKEEPING_DELAY_MS = 2;

interface PendingWrite {
  run: () => unknown;
  durable: boolean;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

interface Settled {
  write: PendingWrite;
  value: unknown;
}

export class CommitBatcher {
  private pending: PendingWrite[] = [];
  /** The flush to come: at the next turn (a client waits) or after BOOKKEEPING_DELAY_MS. */
  private scheduled: "immediate" | "delayed" | undefined;
  private delayTimer: NodeJS.Timeout | undefined;
  /** Committed, waiting for the next sync of the WAL. */
  private unsynced: Settled[] = [];
  /** A sync of the WAL is running: commits wait for it (group commit). */
  private syncing = false;
  /** The checkpointer copies the WAL's last frames: no commit until released (checkpointer.ts). */
  private held = false;
  private closing = false;
  /** Commits and syncs so far (what the group commit saves is measured by these). */
  readonly stats = { commits: 0, syncs: 0 };
  private readonly runBatch: (writes: PendingWrite[]) => unknown[];
  private readonly runBatchIsolated: (writes: PendingWrite[]) => Array<{ ok: boolean; value: unknown }>;
  private readonly walFd: number | undefined;
  private readonly totalChanges: () => number;
  /** A commit changed rows since the last sync started: what reads them must wait for the next sync. */
  private unsyncedChanges = false;

  /** `walPath` is the database's `-wal` file; undefined for an in-memory database (nothing to sync). */
  constructor(db: Database, walPath: string | undefined) {
    this.runBatch = db.transaction((writes: PendingWrite[]) => writes.map((write) => write.run()));
    const isolated = db.transaction((write: PendingWrite) => write.run());
    this.runBatchIsolated = db.transaction((writes: PendingWrite[]) =>
      writes.map((write) => {
        try {
          return { ok: true, value: isolated(write) };
        } catch (error) {
          return { ok: false, value: error };
        }
      }),
    );
    this.walFd = walPath ? openSync(walPath, "r") : undefined;
    const totalChanges = db.prepare("SELECT total_changes()").pluck();
    this.totalChanges = () => totalChanges.get() as number;
  }

  /**
   * Runs `run` in the next group commit. `durable` (the default): resolves once the WAL is synced — for what
   * answers a client (an accepted message, an OTP issued, a revocation). `durable: false`: resolves right after
   * COMMIT, which survives a killed process but maybe not a power cut — for bookkeeping whose loss is already
   * handled (the outbox's claims and outcomes: a lost one makes a message in doubt, never lost).
   */
  write<T>(run: () => T, options: { durable?: boolean } = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({
        run,
        durable: options.durable ?? true,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      const durable = options.durable ?? true;
      if (durable) this.flushSoon();
      else if (this.scheduled === undefined) {
        this.scheduled = "delayed";
        this.delayTimer = setTimeout(() => this.flush(), BOOKKEEPING_DELAY_MS);
      }
    });
  }

  /**
   * Holds commits (writes wait, nothing fails) so that the checkpointer can copy the WAL's last frames; the next
   * commit after `release` then writes the WAL from its start instead of growing it.
   */
  hold(): void {
    this.held = true;
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    if (this.pending.length > 0) this.flushSoon();
  }

  /** Flushes at the next turn of the event loop (check phase), once. */
  private flushSoon(): void {
    if (this.scheduled === "immediate") return;
    clearTimeout(this.delayTimer);
    this.scheduled = "immediate";
    setImmediate(() => this.flush());
  }

  /** `force`: commit even while a sync runs or commits are held (closing). */
  private flush(force = false): void {
    this.scheduled = undefined;
    clearTimeout(this.delayTimer);
    // The sync's callback (or `release`) flushes what arrived meanwhile, in one commit.
    if ((this.syncing || this.held) && !force) return;
    const writes = this.pending;
    if (writes.length === 0) return;
    this.pending = [];
    this.stats.commits++;
    let changesBefore: number;
    try {
      changesBefore = this.totalChanges();
    } catch (error) {
      // The connection is closed: nothing can be written.
      for (const write of writes) write.reject(error);
      return;
    }
    let results: Array<{ ok: boolean; value: unknown }>;
    try {
      results = this.runBatch(writes).map((value) => ({ ok: true, value }));
    } catch {
      // Rolled back: find the failing write(s) by running each in its own savepoint.
      try {
        results = this.runBatchIsolated(writes);
      } catch (error) {
        for (const write of writes) write.reject(error);
        return;
      }
    }
    if (this.totalChanges() !== changesBefore) this.unsyncedChanges = true;
    // A batch that changed nothing (an OTP check of a spent code, an idempotent replay) has nothing of its own to
    // sync; it waits only if what it may have read is not yet synced (a commit since the last sync started, or
    // the sync in flight).
    const mustSync = this.unsyncedChanges || this.syncing;
    results.forEach((result, i) => {
      const write = writes[i] as PendingWrite;
      // A write that failed changed nothing: no need to wait for the disk to say so.
      if (!result.ok) write.reject(result.value);
      else if (write.durable && mustSync) this.unsynced.push({ write, value: result.value });
      else write.resolve(result.value);
    });
    this.sync();
  }

  private sync(): void {
    if (this.syncing || this.unsynced.length === 0) return;
    const batch = this.unsynced;
    this.unsynced = [];
    if (this.walFd === undefined) {
      for (const { write, value } of batch) write.resolve(value);
      return;
    }
    this.syncing = true;
    // This sync covers every commit so far.
    this.unsyncedChanges = false;
    this.stats.syncs++;
    const fd = this.walFd;
    fdatasync(fd, (error) => {
      this.syncing = false;
      for (const { write, value } of batch) {
        if (error) write.reject(error);
        else write.resolve(value);
      }
      if (this.closing) closeSync(fd);
      // What arrived during the sync is committed at the next turn: the answers just resolved go out first,
      // and the requests read meanwhile join the group.
      else if (this.pending.length > 0) this.flushSoon();
      else this.sync();
    });
  }

  /** Commits and syncs whatever is pending, synchronously; for closing the database. */
  drain(): void {
    this.flush(true);
    if (this.walFd !== undefined && this.unsynced.length > 0) {
      fdatasyncSync(this.walFd);
      this.unsyncedChanges = false;
      this.stats.syncs++;
    }
    const batch = this.unsynced;
    this.unsynced = [];
    for (const { write, value } of batch) write.resolve(value);
  }

  close(): void {
    this.drain();
    if (this.walFd === undefined) return;
    // A sync still running closes the file when it returns.
    if (this.syncing) this.closing = true;
    else closeSync(this.walFd);
  }
}
