import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { AdminError } from "./command.js";

// Which database an operator command acts on, and whether a gateway uses it. A command that writes (revoke)
// must never create a database nobody reads: it was how `npm run revoke` once printed "revoked" into a fresh
// ./data/wagate.db while the running gateway kept accepting the token.

export interface DatabaseFile {
  /** Absolute path. */
  path: string;
  sizeBytes: number;
  /**
   * A connection has it open in WAL mode, or one ended without closing it: SQLite keeps `<db>-shm` exactly as
   * long as some connection uses the database (the last one to close removes it). A running gateway always has.
   */
  inUse: boolean;
}

/** The database named by `--database` or DATABASE_PATH; refuses a missing one and one that is not wagate's. */
export function gatewayDatabase(
  explicit: string | undefined,
  env: Record<string, string | undefined>,
): DatabaseFile {
  const given = explicit ?? env.DATABASE_PATH;
  if (given === undefined || given.trim() === "") {
    throw new AdminError(
      "which database? give --database <file> or set DATABASE_PATH (on the VM: sudo wagate <command> uses the gateway's own)",
    );
  }
  const path = resolve(given);
  if (!existsSync(path)) {
    throw new AdminError(
      `no database at ${path}: nothing was written (a gateway creates its database at start; on the VM run sudo wagate <command>)`,
    );
  }
  // Before opening it: our own connection makes a -shm file too.
  const inUse = existsSync(`${path}-shm`);
  let db: BetterSqlite3.Database | undefined;
  try {
    // Read-write but query-only: a read-only connection would leave a -shm file behind (it cannot remove it),
    // and the next look would take it for a gateway's. The last connection to close removes it.
    db = new BetterSqlite3(path, { fileMustExist: true });
    db.pragma("query_only = true");
    const table = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'revoked_tokens'")
      .get();
    if (table === undefined)
      throw new AdminError(`${path} is not a wagate database (no revoked_tokens table)`);
  } catch (error) {
    if (error instanceof AdminError) throw error;
    throw new AdminError(`${path} is not a readable SQLite database: ${(error as Error).message}`);
  } finally {
    db?.close();
  }
  return { path, sizeBytes: statSync(path).size, inUse };
}
