import type BetterSqlite3 from "better-sqlite3";
import { OtherCommitsWatch } from "./other-commits.js";

/**
 * The revoked token ids, held in memory so that authenticating a request reads no table: a SELECT outside a
 * transaction costs ~4 µs of WAL locking here, paid by every authenticated request.
 *
 * Revocations made through this connection are added when they commit. Those written by another process
 * (`npm run revoke` opens the database itself) show in `PRAGMA data_version`, which changes when any other
 * connection commits: it is read at most once per turn of the event loop, and only new rows are then read.
 * So a revocation still takes effect at the token's next request, as before.
 */
export class RevocationList {
  private readonly revoked = new Set<string>();
  private readonly otherCommits: OtherCommitsWatch;
  private readonly rowsAfter: BetterSqlite3.Statement;
  private lastRowid = 0;

  constructor(db: BetterSqlite3.Database) {
    this.otherCommits = new OtherCommitsWatch(db);
    this.rowsAfter = db.prepare("SELECT rowid, jti FROM revoked_tokens WHERE rowid > ? ORDER BY rowid").raw();
  }

  has(jti: string): boolean {
    this.refresh();
    return this.revoked.has(jti);
  }

  /** After this connection committed a revocation. */
  add(jti: string): void {
    this.revoked.add(jti);
  }

  private refresh(): void {
    if (!this.otherCommits.changed()) return;
    for (const [rowid, jti] of this.rowsAfter.all(this.lastRowid) as Array<[number, string]>) {
      this.revoked.add(jti);
      this.lastRowid = rowid;
    }
  }
}
