import type BetterSqlite3 from "better-sqlite3";

/**
 * Whether another connection (another process: `npm run revoke`, a second gateway) committed since last asked:
 * `PRAGMA data_version` changes when any other connection commits. It is read at most once per turn of the event
 * loop, so in-memory copies of small tables (revoked tokens, the numbers registry) cost a hot path one read per turn.
 */
export class OtherCommitsWatch {
  private readonly dataVersion: BetterSqlite3.Statement;
  private seenVersion: number | undefined;
  private checkedThisTurn = false;

  constructor(db: BetterSqlite3.Database) {
    this.dataVersion = db.prepare("PRAGMA data_version").pluck();
  }

  /** True when another connection committed since the version last seen; false when already asked this turn. */
  changed(): boolean {
    if (this.checkedThisTurn) return false;
    this.checkedThisTurn = true;
    setImmediate(() => {
      this.checkedThisTurn = false;
    });
    const version = this.dataVersion.get() as number;
    if (version === this.seenVersion) return false;
    this.seenVersion = version;
    return true;
  }

  /** Takes the current version as seen (after a full reload). */
  markSeen(): void {
    this.seenVersion = this.dataVersion.get() as number;
  }
}
