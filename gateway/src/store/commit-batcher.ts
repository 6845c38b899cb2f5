import { closeSync, fsync, fsyncSync, openSync } from "node:fs";
import type { Database } from "better-sqlite3";

// Group commit with the durability of synchronous=FULL, without blocking the event loop.
//
// Writes that arrive in the same turn of the event loop run in one transaction. A write that throws must not undo
// the others, yet a savepoint around every write doubles the cost of a small insert (SAVEPOINT and RELEASE are
// statements too): so the batch first runs plainly, and only if one write throws is it rolled back and run
// again with a savepoint per write. A write's `run` therefore only touches the database and may run twice. The connection runs with synchronous=NORMAL, so COMMIT only writes
// the WAL; this class then fsyncs the WAL file itself, on libuv's thread pool, and resolves the callers'
// promises only after that fsync returned. So a caller (a route about to answer 202) hears "done" only once its
// rows are on disk, exactly as with FULL, while the event loop keeps parsing requests during the fsync, and the
// writes that arrive meanwhile share the next one. A second fsync may start while one is running (any fsync
// that starts after a commit covers it), so a write waits for about one fsync, not one and a half. (SQLite itself syncs the WAL before a checkpoint and the
// database file after it, in NORMAL mode too.) A process kill loses nothing committed even before the fsync;
// the fsync is what covers a power cut or a kernel crash.

/** libuv's pool has 4 threads, shared with crypto and fs: leave it room. */
const MAX_SYNCS_IN_FLIGHT = 2;
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
  /** Committed, waiting for the next fsync of the WAL. */
  private unsynced: Settled[] = [];
  private syncsInFlight = 0;
  private readonly runBatch: (writes: PendingWrite[]) => unknown[];
  private readonly runBatchIsolated: (writes: PendingWrite[]) => Array<{ ok: boolean; value: unknown }>;
  private readonly walFd: number | undefined;

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
  }

  /**
   * Runs `run` in the next group commit. `durable` (the default): resolves once the WAL is fsynced — for what
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
      if (durable && this.scheduled !== "immediate") {
        clearTimeout(this.delayTimer);
        this.scheduled = "immediate";
        setImmediate(() => this.flush());
      } else if (!durable && this.scheduled === undefined) {
        this.scheduled = "delayed";
        this.delayTimer = setTimeout(() => this.flush(), BOOKKEEPING_DELAY_MS);
      }
    });
  }

  private flush(): void {
    this.scheduled = undefined;
    clearTimeout(this.delayTimer);
    const writes = this.pending;
    if (writes.length === 0) return;
    this.pending = [];
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
    results.forEach((result, i) => {
      const write = writes[i] as PendingWrite;
      // A write that failed changed nothing: no need to wait for the disk to say so.
      if (!result.ok) write.reject(result.value);
      else if (write.durable) this.unsynced.push({ write, value: result.value });
      else write.resolve(result.value);
    });
    this.sync();
  }

  private sync(): void {
    if (this.syncsInFlight >= MAX_SYNCS_IN_FLIGHT || this.unsynced.length === 0) return;
    const batch = this.unsynced;
    this.unsynced = [];
    if (this.walFd === undefined) {
      for (const { write, value } of batch) write.resolve(value);
      return;
    }
    this.syncsInFlight++;
    fsync(this.walFd, (error) => {
      this.syncsInFlight--;
      for (const { write, value } of batch) {
        if (error) write.reject(error);
        else write.resolve(value);
      }
      this.sync();
    });
  }

  /** Commits and syncs whatever is pending, synchronously; for closing the database. */
  drain(): void {
    this.flush();
    if (this.walFd !== undefined && this.unsynced.length > 0) fsyncSync(this.walFd);
    const batch = this.unsynced;
    this.unsynced = [];
    for (const { write, value } of batch) write.resolve(value);
  }

  close(): void {
    this.drain();
    if (this.walFd !== undefined) closeSync(this.walFd);
  }
}
